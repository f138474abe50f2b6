package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/seccompagent/seccompagent/test/testenv"
	"golang.org/x/sys/unix"
)

const execChildEnv = "SECCOMPAGENT_EXEC_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(execChildEnv) != "" {
		// The re-executed child: `seccompagent exec ARGS`, which
		// returns only on failure.
		err := runExec(os.Args[1:], os.Stdout, os.Stderr)
		fmt.Fprintln(os.Stderr, "exec failed:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func runExecChild(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execChildEnv+"=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return o.String(), e.String(), err
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("exec child hung; stderr %s", e.String())
		return "", "", nil
	}
}

// TestExecAgentRejects: an agent that receives the listener and closes it
// (as the real one does for a peer it refuses) must not leave the command
// running with a filter nobody answers: exec fails and runs nothing.
func TestExecAgentRejects(t *testing.T) {
	testenv.Require(t, seccompNotify(), "kernel or libseccomp lacks seccomp user notification")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	states := make(chan string, 4)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			if r, err := notify.ReceiveState(c, 5*time.Second); err == nil {
				states <- fmt.Sprintf("%s pid=%d cpus=%s", r.State.State.ID, r.State.State.Pid, r.State.State.Annotations["seccompagent.io/cpus"])
				unix.Close(r.Fd)
			}
			c.Close()
		}
	}()
	out, stderr, err := runExecChild(t, "--socket", sock, "--cpus", "2", "--", "/bin/echo", "ran")
	if err == nil || strings.Contains(out, "ran") || !strings.Contains(stderr, "did not take the listener") {
		t.Fatalf("err %v, stdout %q, stderr %q: want a failure and nothing run", err, out, stderr)
	}
	host, _ := os.Hostname()
	select {
	case st := <-states:
		if !strings.HasPrefix(st, "exec-"+host+"-") || !strings.HasSuffix(st, " cpus=2") {
			t.Errorf("state %q, want exec-%s-PID with pid = its own and cpus=2", st, host)
		}
	default:
		t.Error("the fake agent received no state")
	}
	// Flag errors come before anything is installed.
	if _, stderr, err := runExecChild(t, "--cpus", "many", "--", "/bin/true"); err == nil || !strings.Contains(stderr, "--cpus") {
		t.Errorf("bad --cpus: %v %q", err, stderr)
	}
}

// seccompNotify reports whether a notify filter can be loaded here.
func seccompNotify() bool {
	_, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return false
	}
	b, _ := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	return strings.Contains(string(b), "user_notif")
}

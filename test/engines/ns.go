package engines

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// nsReadyTimeout bounds how long NewMountNS waits for its binds.
	nsReadyTimeout = 10 * time.Second
	// nsIdleTimeout is how long Close lets the namespace's processes
	// exit on their own.
	nsIdleTimeout = 10 * time.Second
)

// Bind is a bind mount made inside a MountNS: Source (a private directory)
// appears at Target, hiding what the host has there.
type Bind struct {
	Source, Target string
}

// MountNS is a private mount namespace (propagation private: nothing
// mounted in it reaches the host, and everything mounted in it goes away
// with it), kept alive by a holder process. Engines run in it so that the
// paths they hard-code (containerd's shim sockets under /run/containerd,
// podman's /dev/shm lock and blob cache, runc's /run/runc) land in the
// test's own directories instead of the host's.
type MountNS struct {
	holder *exec.Cmd
	done   chan struct{}
	// link is the namespace's /proc/PID/ns/mnt link text, "mnt:[inode]".
	link string
}

// NewMountNS starts `unshare --mount --propagation private` with a holder
// that makes the binds (in order) and then sleeps until Close.
func NewMountNS(binds []Bind) (*MountNS, error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, errors.New("unshare (util-linux) not found")
	}
	script := `set -e
while [ $# -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
echo ready
exec sleep infinity`
	args := []string{"--mount", "--propagation", "private", "sh", "-c", script, "sh"}
	for _, b := range binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) {
			return nil, fmt.Errorf("bind %s -> %s: want absolute paths", b.Source, b.Target)
		}
		args = append(args, b.Source, b.Target)
	}
	cmd := exec.Command(unshare, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mount namespace holder: %w", err)
	}
	ns := &MountNS{holder: cmd, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line == "ready\n"
	}()
	go func() {
		_ = cmd.Wait()
		close(ns.done)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-ns.done
			return nil, fmt.Errorf("mount namespace holder failed: %s", strings.TrimSpace(stderr.String()))
		}
	case <-time.After(nsReadyTimeout):
		ns.kill()
		return nil, fmt.Errorf("mount namespace holder not ready after %v: %s", nsReadyTimeout, stderr.String())
	}
	ns.link, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	if err != nil {
		ns.kill()
		return nil, err
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); self == ns.link {
		ns.kill()
		return nil, errors.New("unshare did not make a new mount namespace")
	}
	return ns, nil
}

// Pid is the holder's pid.
func (ns *MountNS) Pid() int { return ns.holder.Process.Pid }

// Command returns a command that runs name in the namespace (nsenter execs
// it: the command's pid is the program's own).
func (ns *MountNS) Command(name string, args ...string) *exec.Cmd {
	nsenter := "nsenter"
	if p, err := exec.LookPath("nsenter"); err == nil {
		nsenter = p
	}
	argv := append([]string{"--target", strconv.Itoa(ns.Pid()), "--mount", "--", name}, args...)
	return exec.Command(nsenter, argv...)
}

// Members lists the pids of the processes in the namespace other than the
// holder (engines, shims, conmon, ...).
func (ns *MountNS) Members() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == ns.Pid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && link == ns.link {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Close waits up to nsIdleTimeout for the namespace's processes to exit,
// kills by pid those still there (each one is a leftover of an engine the
// test started, and is reported in the error), then the holder. The namespace and all its mounts end with its last
// process.
func (ns *MountNS) Close() error {
	// Give what is still exiting (podman's conmon and its cleanup
	// command, a shim whose container just ended) a moment.
	for deadline := time.Now().Add(nsIdleTimeout); len(ns.Members()) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	var left []string
	for round := 0; round < 3; round++ {
		pids := ns.Members()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if round == 0 {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				left = append(left, fmt.Sprintf("%d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ns.kill()
	if len(left) > 0 {
		return fmt.Errorf("processes left in the engine's mount namespace (killed): %s", strings.Join(left, "; "))
	}
	return nil
}

func (ns *MountNS) kill() {
	_ = ns.holder.Process.Kill()
	<-ns.done
}

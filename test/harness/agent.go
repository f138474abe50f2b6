package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// agentReadyTimeout bounds how long StartAgent waits for the socket.
	agentReadyTimeout = 30 * time.Second
	// agentStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	agentStopGrace = 5 * time.Second
)

// Agent is a running `seccompagent serve` started by StartAgent.
type Agent struct {
	Socket  string
	LogPath string

	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has been waited for
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// StartAgent starts `bin serve --socket socket --log-level debug` with its
// output appended to a log file next to the socket, and returns once the
// agent logs that it serves. If the agent exits or is not ready within 10 s
// (or ctx ends), the agent is stopped and the error includes its log.
func StartAgent(ctx context.Context, bin, socket string) (*Agent, error) {
	return StartAgentWith(ctx, bin, socket, AgentOptions{})
}

// AgentOptions are extra settings for StartAgentWith.
type AgentOptions struct {
	Args []string // more serve flags
	Env  []string // more environment
}

// StartAgentWith is StartAgent with extra flags and environment. Starting a
// second agent on a socket another one serves makes the first hand over
// and exit (an upgrade); both share the holder next to the socket.
func StartAgentWith(ctx context.Context, bin, socket string, opts AgentOptions) (*Agent, error) {
	socket, err := filepath.Abs(socket)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	logPath := socket + ".log"
	before := strings.Count(readLog(logPath), servingLine)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy of the fd

	cmd := exec.Command(bin, append([]string{"serve", "--socket", socket, "--log-level", "debug"}, opts.Args...)...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Do not leave an agent behind if the test binary dies. (The holder
	// it starts is not the agent's child for long: KillHolder stops it.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %s: %w", bin, err)
	}
	a := &Agent{Socket: socket, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()

	ready, cancel := context.WithTimeout(ctx, agentReadyTimeout)
	defer cancel()
	for {
		select {
		case <-a.done:
			return nil, fmt.Errorf("agent exited before it was ready: %v\nagent log:\n%s", a.waitErr, a.Logs())
		default:
		}
		if strings.Count(readLog(logPath), servingLine) > before {
			return a, nil
		}
		select {
		case <-ready.Done():
			_ = a.Stop()
			return nil, fmt.Errorf("agent on %s not serving after %v\nagent log:\n%s", socket, agentReadyTimeout, a.Logs())
		case <-a.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Slack is extra time timing bounds allow where the machine is emulated
// ($SECCOMPAGENT_E2E_SLACK, set by the VM tier: TCG runs everything many
// times slower); 0 on real hardware, where the exact bounds are asserted.
func Slack() time.Duration {
	d, err := time.ParseDuration(os.Getenv("SECCOMPAGENT_E2E_SLACK"))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// servingLine is what the agent logs once it accepts runtime connections.
const servingLine = "seccompagent serving"

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// Kill SIGKILLs the agent (a crash); its holder keeps the listeners.
func (a *Agent) Kill() {
	a.stopOnce.Do(func() {
		_ = a.cmd.Process.Kill()
		<-a.done
	})
}

// Wait waits up to d for the agent to exit by itself (after a newer agent
// took over) and reports whether it did.
func (a *Agent) Wait(d time.Duration) bool {
	select {
	case <-a.done:
		return true
	case <-time.After(d):
		return false
	}
}

// HolderPid is the pid of the holder serving next to the agent's socket, or
// 0 if none runs.
func (a *Agent) HolderPid() int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(a.Socket), "holder.sock.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// KillHolder SIGKILLs the holder next to the agent's socket (which the
// agent started) and waits for it to be gone.
func (a *Agent) KillHolder() {
	pid := a.HolderPid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return // a zombie of the (dead) agent: gone for our purposes
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Exited reports whether the agent process has ended (and how).
func (a *Agent) Exited() (bool, error) {
	select {
	case <-a.done:
		return true, a.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the agent's pid, waits up to 5 s, then SIGKILLs it,
// and kills the holder it started. It returns an error if the agent had to
// be killed or exited with an error other than the SIGTERM it was sent.
// Stop is idempotent.
func (a *Agent) Stop() error {
	defer a.KillHolder()
	return a.Terminate()
}

// Terminate is Stop without killing the holder: the restart a service
// manager does.
func (a *Agent) Terminate() error {
	a.stopOnce.Do(func() {
		select {
		case <-a.done:
			a.stopErr = ExitError("agent exited on its own", a.waitErr)
			return
		default:
		}
		termErr := a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
			a.stopErr = ExitError("agent exit after SIGTERM", a.waitErr)
			return
		case <-time.After(agentStopGrace):
		}
		// What it was doing, for the error: its threads' states and
		// the Go runtime's stacks (SIGQUIT writes them to its log).
		state := procState(a.cmd.Process.Pid)
		_ = a.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-a.done:
		case <-time.After(2 * time.Second):
		}
		killErr := a.cmd.Process.Kill()
		select {
		case <-a.done:
			a.stopErr = fmt.Errorf("agent did not exit within %v of SIGTERM (sent: %v): stacks in its log, killed (%v); it was:\n%s", agentStopGrace, termErr, killErr, state)
		case <-time.After(30 * time.Second):
			a.stopErr = fmt.Errorf("agent did not exit within %v of SIGTERM (sent: %v), nor 30 s after SIGKILL (sent: %v); it was:\n%s\nnow:\n%s", agentStopGrace, termErr, killErr, state, procState(a.cmd.Process.Pid))
		}
	})
	return a.stopErr
}

// procState is pid's state and each thread's, with where it waits.
func procState(pid int) string {
	var b strings.Builder
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "State:") || strings.HasPrefix(line, "SigPnd:") || strings.HasPrefix(line, "ShdPnd:") {
				fmt.Fprintln(&b, line)
			}
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, t.Name()))
		state := "?"
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
			state = string(stat[i+2])
		}
		fmt.Fprintf(&b, "thread %s %s %s\n", t.Name(), state, wchan)
	}
	return b.String()
}

// ExitError treats a clean exit and death by SIGTERM as success, and
// otherwise wraps err with what.
func ExitError(what string, err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Logs returns everything the agent wrote so far (for failure messages).
func (a *Agent) Logs() string {
	data, err := os.ReadFile(a.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read agent log %s: %v)", a.LogPath, err)
	}
	return string(data)
}

package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

const (
	// agentReadyTimeout bounds how long StartAgent waits for the socket.
	agentReadyTimeout = 10 * time.Second
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
// output in a log file next to the socket, and returns once the socket
// accepts connections. If the agent exits or the socket is not ready within
// 10 s (or ctx ends), the agent is stopped and the error includes its log.
func StartAgent(ctx context.Context, bin, socket string) (*Agent, error) {
	socket, err := filepath.Abs(socket)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	logPath := socket + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy of the fd

	cmd := exec.Command(bin, "serve", "--socket", socket, "--log-level", "debug")
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Do not leave an agent behind if the test binary dies.
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
			return nil, fmt.Errorf("agent exited before its socket was ready: %v\nagent log:\n%s", a.waitErr, a.Logs())
		default:
		}
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			// The agent sees a connection that closes with no data, which
			// it must tolerate (crun does the same on a failed start).
			conn.Close()
			return a, nil
		}
		select {
		case <-ready.Done():
			_ = a.Stop()
			return nil, fmt.Errorf("agent socket %s not accepting connections after %v: %v\nagent log:\n%s",
				socket, agentReadyTimeout, err, a.Logs())
		case <-a.done:
		case <-time.After(50 * time.Millisecond):
		}
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

// Stop sends SIGTERM to the agent's pid, waits up to 5 s, then SIGKILLs it.
// It returns an error if the agent had to be killed or exited with an error
// other than the SIGTERM it was sent. Stop is idempotent.
func (a *Agent) Stop() error {
	a.stopOnce.Do(func() {
		select {
		case <-a.done:
			a.stopErr = ExitError("agent exited on its own", a.waitErr)
			return
		default:
		}
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
			a.stopErr = ExitError("agent exit after SIGTERM", a.waitErr)
		case <-time.After(agentStopGrace):
			_ = a.cmd.Process.Kill()
			<-a.done
			a.stopErr = fmt.Errorf("agent did not exit within %v of SIGTERM: killed", agentStopGrace)
		}
	})
	return a.stopErr
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

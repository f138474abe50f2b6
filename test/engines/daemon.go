package engines

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

const (
	// daemonReadyTimeout bounds how long a daemon may take to listen.
	daemonReadyTimeout = 60 * time.Second
	// daemonStopGrace is how long Stop waits after SIGTERM.
	daemonStopGrace = 20 * time.Second
	// logTail is how much of a daemon's log goes into an error message.
	logTail = 4000
)

// Daemon is an engine daemon (containerd, dockerd) started by the tests.
type Daemon struct {
	Name    string
	LogPath string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartDaemon starts cmd with its output in logPath, then waits until the
// unix socket sock accepts connections.
func StartDaemon(ctx context.Context, name string, cmd *exec.Cmd, logPath, sock string) (*Daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Do not leave a daemon behind if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	ready, cancel := context.WithTimeout(ctx, daemonReadyTimeout)
	defer cancel()
	for {
		conn, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			conn.Close()
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("%s exited before listening on %s: %v\n%s", name, sock, d.waitErr, d.Logs())
		case <-ready.Done():
			_ = d.Stop()
			return nil, fmt.Errorf("%s not listening on %s after %v: %v\n%s", name, sock, daemonReadyTimeout, err, d.Logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pid is the daemon's pid.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM to the daemon's pid and waits for it to exit; after
// daemonStopGrace it is killed and Stop reports it.
func (d *Daemon) Stop() error {
	select {
	case <-d.done:
		return harness.ExitError(d.Name+" had exited", d.waitErr)
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return harness.ExitError(d.Name, d.waitErr)
	case <-time.After(daemonStopGrace):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM: killed", d.Name, d.Pid(), daemonStopGrace)
	}
}

// Logs returns the end of the daemon's log.
func (d *Daemon) Logs() string {
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no %s log: %v)", d.Name, err)
	}
	if len(data) > logTail {
		data = append([]byte("…"), data[len(data)-logTail:]...)
	}
	return fmt.Sprintf("--- %s log (%s) ---\n%s", d.Name, d.LogPath, data)
}

// runCmd runs cmd with its output captured. A container process that
// outlives a killed client may hold the pipes: do not wait for it forever.
func runCmd(ctx context.Context, cmd *exec.Cmd) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd.Stdin = nil
	cmd.Stdout = &o
	cmd.Stderr = &e
	cmd.WaitDelay = 5 * time.Second
	done := make(chan struct{})
	if err = cmd.Start(); err != nil {
		return "", "", err
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s: %w (%v)", strings.Join(cmd.Args, " "), ctx.Err(), err)
		} else {
			err = fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
		}
	}
	return o.String(), e.String(), err
}

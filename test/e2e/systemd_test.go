package e2e

// The agent under systemd with --holder=systemd, against a fake systemd
// (PID 1 here is not systemd): this test owns the notify socket, keeps the
// fds the agent stores with FDSTORE=1/FDNAME= (and drops them on
// FDSTOREREMOVE=1), and starts the agent again the way systemd does after a
// crash: the stored fds from fd 3 on, LISTEN_FDS, LISTEN_FDNAMES and
// LISTEN_PID set to the new process's pid.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"golang.org/x/sys/unix"
)

// fakeSystemd is the notify socket and fd store of one service.
type fakeSystemd struct {
	t      *testing.T
	sock   string
	fd     int
	mu     sync.Mutex
	store  []storedFd
	ready  chan struct{}
	status []string
}

type storedFd struct {
	name string
	fd   int
}

func newFakeSystemd(t *testing.T, dir string) *fakeSystemd {
	t.Helper()
	s := &fakeSystemd{t: t, sock: filepath.Join(dir, "notify.sock"), ready: make(chan struct{}, 16)}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.sock}); err != nil {
		t.Fatal(err)
	}
	s.fd = fd
	go s.serve()
	t.Cleanup(func() {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		unix.Close(fd)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.store {
			unix.Close(f.fd)
		}
		s.store = nil
	})
	return s
}

func (s *fakeSystemd) serve() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil || (n == 0 && oobn == 0) {
			return
		}
		var fds []int
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		vars := map[string]string{}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		s.mu.Lock()
		switch {
		case vars["FDSTORE"] == "1":
			for _, fd := range fds {
				s.store = append(s.store, storedFd{name: vars["FDNAME"], fd: fd})
			}
			fds = nil
		case vars["FDSTOREREMOVE"] == "1":
			kept := s.store[:0]
			for _, f := range s.store {
				if f.name == vars["FDNAME"] {
					unix.Close(f.fd)
				} else {
					kept = append(kept, f)
				}
			}
			s.store = kept
		}
		if vars["READY"] == "1" {
			s.ready <- struct{}{}
		}
		s.mu.Unlock()
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

// dropHungUp closes stored fds that report POLLHUP, as systemd does.
func (s *fakeSystemd) dropHungUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.store[:0]
	for _, f := range s.store {
		p := []unix.PollFd{{Fd: int32(f.fd)}}
		if _, err := unix.Poll(p, 0); err == nil && p[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			unix.Close(f.fd)
			continue
		}
		kept = append(kept, f)
	}
	s.store = kept
}

// start runs `serve --holder systemd` with the store's fds, like systemd.
func (s *fakeSystemd) start(bin, socket, logPath string) *exec.Cmd {
	s.t.Helper()
	s.dropHungUp()
	s.mu.Lock()
	var files []*os.File
	var names []string
	for _, f := range s.store {
		// The store keeps owning f.fd: the child gets a duplicate,
		// closed below once it is started. (An *os.File made on f.fd
		// itself would close that number whenever the garbage collector
		// finalized it, long after, whatever the number then named: it
		// once was another test's agent pidfd, whose SIGTERM and
		// SIGKILL then went nowhere.)
		dup, err := unix.FcntlInt(uintptr(f.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			s.mu.Unlock()
			for _, f := range files {
				f.Close()
			}
			s.t.Fatal(err)
		}
		files = append(files, os.NewFile(uintptr(dup), f.name))
		names = append(names, f.name)
	}
	s.mu.Unlock()
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	// LISTEN_PID must be the service's own pid: the shell's, which exec
	// keeps.
	script := `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`
	if len(files) == 0 {
		script = `exec "$@"`
	}
	cmd := exec.Command("/bin/sh", "-c", script, "sh", bin, "serve", "--holder", "systemd", "--socket", socket, "--log-level", "debug")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.sock)
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.ready:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		log, _ := os.ReadFile(logPath)
		s.t.Fatalf("agent under fake systemd did not send READY=1\n%s", log)
	}
	return cmd
}

func (s *fakeSystemd) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n []string
	for _, f := range s.store {
		n = append(n, f.name)
	}
	return n
}

// TestSystemdFDStore: under systemd the fd store is the holder. A runc
// container calls both syscalls in a tight loop while the agent is killed
// and started again with the stored fds: no call fails or gets the host's
// numbers.
func TestSystemdFDStore(t *testing.T) {
	requireE2E(t, harness.Runc)
	bin := requireAgent(t)
	dir := t.TempDir()
	sd := newFakeSystemd(t, dir)
	socket := filepath.Join(dir, "agent.sock")
	logPath := socket + ".log"
	agent := sd.start(bin, socket, logPath)
	stopAgent := func(c *exec.Cmd) {
		c.Process.Kill()
		c.Wait()
	}
	defer func() { stopAgent(agent) }()
	a := &harness.Agent{Socket: socket, LogPath: logPath}

	h := startHammer(t, harness.Runc, a, 6, 0)
	time.Sleep(1500 * time.Millisecond)
	names := sd.names()
	want := map[string]bool{"socket": false, "journal": false, "lsn-": false, "meta-": false}
	for _, n := range names {
		for w := range want {
			if strings.HasPrefix(n, w) {
				want[w] = true
			}
		}
	}
	for w, ok := range want {
		if !ok {
			t.Errorf("no fd named %s* in the fd store: %q", w, names)
		}
	}
	stopAgent(agent)
	start := time.Now()
	time.Sleep(time.Second)
	agent = sd.start(bin, socket, logPath)
	gap := time.Since(start)
	r := h.result(t, 30*time.Second)
	t.Logf("fake systemd restart: %s (gap %v, stored %q)", r.line, gap.Round(time.Millisecond), names)
	r.check(t, "runc under systemd", gap+time.Second)
	if t.Failed() {
		log, _ := os.ReadFile(logPath)
		t.Logf("agent log:\n%s", log)
	}
}

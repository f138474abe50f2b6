package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Config is what `seccompagent serve` is told.
type Config struct {
	// Socket is the unix socket runtimes connect to.
	Socket string
	// ProcRoot is the procfs mount ("/proc").
	ProcRoot string
	// FSRoot is the root under which cgroup mounts and /sys are found ("/").
	FSRoot  string
	Version string
	Log     *logrus.Entry
}

// Server is one running agent.
type Server struct {
	cfg    Config
	log    *logrus.Entry
	reader *limits.Reader
	kernel affinity.Kernel
	// gate is held for reading while a notification is in flight, so a
	// shutdown can take it for writing and know nothing is half answered.
	gate  *sync.RWMutex
	inits initPids
}

// New reads the host's cgroup layout and kernel facts.
func New(cfg Config) (*Server, error) {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.FSRoot == "" {
		cfg.FSRoot = "/"
	}
	reader, err := limits.NewReader(cfg.ProcRoot, cfg.FSRoot)
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	kern, err := affinity.ProbeKernel(cfg.FSRoot)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: cfg.Log, reader: reader, kernel: kern, gate: new(sync.RWMutex)}, nil
}

// Run serves until ctx is cancelled, then stops accepting, waits (up to 5 s)
// for the notifications being answered and returns.
func (s *Server) Run(ctx context.Context) error {
	ln, err := Listen(s.cfg.Socket)
	if err != nil {
		return err
	}
	s.log.WithFields(logrus.Fields{"socket": s.cfg.Socket, "cgroups": s.reader.Mode(), "nr_cpu_ids": s.kernel.NrCPUIDs,
		"cpumask_size": s.kernel.MaskSize, "version": s.cfg.Version}).Info("seccompagent serving")

	// Each listener keeps one thread in RECV or poll; Go's default cap of
	// 10000 threads is fatal when reached, so leave room for many
	// containers and their execs.
	debug.SetMaxThreads(100000)
	go func() {
		<-ctx.Done()
		s.log.Info("shutting down: no new containers, finishing in-flight notifications")
		ln.Close()
	}()
	s.acceptLoop(ln)
	os.Remove(s.cfg.Socket)
	// Wait for every notification being answered; new ones wait here
	// until the process exits.
	done := make(chan struct{})
	go func() { s.gate.Lock(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("in-flight notifications did not finish within 5s")
	}
	s.log.Info("seccompagent stopped")
	return nil
}

// Listen creates the root-only socket: directory 0700, socket 0600. A stale
// socket file is replaced; a live one means another agent is serving.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is already served by another process: stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// initPids remembers each live container's init pid by container id, for
// the exec connections that do not carry it.
type initPids struct {
	mu sync.Mutex
	m  map[string]map[int]int // id -> init pid -> connections
}

func (p *initPids) add(id string, pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]map[int]int{}
	}
	if p.m[id] == nil {
		p.m[id] = map[int]int{}
	}
	p.m[id][pid]++
}

func (p *initPids) remove(id string, pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[id][pid]--; p.m[id][pid] <= 0 {
		delete(p.m[id], pid)
	}
	if len(p.m[id]) == 0 {
		delete(p.m, id)
	}
}

// lookup returns the init pid of container id if exactly one is known.
func (p *initPids) lookup(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m[id]) != 1 {
		return 0
	}
	for pid := range p.m[id] {
		return pid
	}
	return 0
}

func (s *Server) acceptLoop(ln *net.UnixListener) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.WithError(err).Warn("accept failed")
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		go s.serveConn(conn)
	}
}

// serveConn takes one runtime connection: check the peer, receive the state
// and the listener fd, then serve that fd until its container is gone.
func (s *Server) serveConn(conn *net.UnixConn) {
	log := s.log
	if err := checkPeer(conn); err != nil {
		log.WithError(err).Warn("rejected connection")
		conn.Close()
		return
	}
	rcv, err := notify.ReceiveState(conn, 5*time.Second)
	conn.Close()
	if errors.Is(err, notify.ErrNoData) {
		// seccompagent-runtime checks the socket this way before every
		// container; crun does it too when container setup fails.
		log.Debug("connection closed without a container state")
		return
	}
	if err != nil {
		log.WithError(err).Warn("rejected connection: not a valid seccomp listener message")
		return
	}
	st := rcv.State.State
	c := &notify.Container{ID: st.ID, InitPid: st.Pid, Annotations: st.Annotations}
	if c.InitPid == 0 {
		// crun 1.8 sends neither pid for an exec: use the init we saw
		// when the container was created (else the handlers find pid 1
		// of the caller's pid namespace).
		c.InitPid = s.inits.lookup(c.ID)
	} else {
		s.inits.add(c.ID, c.InitPid)
		defer s.inits.remove(c.ID, c.InitPid)
	}
	log = log.WithFields(logrus.Fields{"container": c.ID, "pid": rcv.State.Pid, "status": st.Status})
	s.serveListener(rcv.Fd, c, log)
	unix.Close(rcv.Fd)
	log.Info("container detached")
}

// serveListener runs the notify loop for one container's listener fd until
// every task using its filter is gone.
func (s *Server) serveListener(fd int, c *notify.Container, log *logrus.Entry) {
	policy, err := affinity.ParsePolicy(c.Annotations[affinity.Annotation])
	if err != nil {
		log.WithError(err).Warn("ignoring annotation, using quota")
	}
	reg := notify.NewRegistry()
	regErr := errors.Join(
		reg.Register("sysinfo", &sysinfo.Handler{Limits: s.reader, Host: sysinfo.RealHost, ProcRoot: s.cfg.ProcRoot, Log: log}),
		reg.Register("sched_getaffinity", &affinity.Handler{Limits: s.reader, Kernel: s.kernel, Policy: policy, ProcRoot: s.cfg.ProcRoot, Log: log}),
	)
	if regErr != nil {
		// Only possible with a broken libseccomp; every call is
		// answered CONTINUE then, which is the kernel's answer.
		log.WithError(regErr).Error("cannot resolve syscall numbers")
	}
	syncWake := notify.EnableSyncWakeUp(fd)
	loop := &notify.Loop{Fd: fd, Container: c, Registry: reg, Kernel: notify.KernelFor(syncWake), ProcRoot: s.cfg.ProcRoot, Gate: s.gate, Log: log}
	log.WithField("sync_wake_up", syncWake).Info("container attached")
	if err := loop.Run(); err != nil {
		log.WithError(err).Error("notification loop stopped; trapped calls of this container now fail with ENOSYS")
	}
}

// checkPeer allows only root (or the agent's own user) to hand us fds; the
// socket mode already says so, SO_PEERCRED makes sure.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("peer pid %d uid %d is not root", cred.Pid, cred.Uid)
	}
	return nil
}

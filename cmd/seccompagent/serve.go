package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
	ocihook "github.com/seccompagent/seccompagent/oci-hook"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func init() {
	commands["serve"] = command{"run the agent: answer trapped syscalls for containers", runServe}
}

func runServe(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", ocihook.DefaultSocket, "unix socket runtimes connect to (linux.seccomp.listenerPath)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	procRoot := fs.String("proc", "/proc", "procfs mount to read processes from")
	fsRoot := fs.String("root", "/", "root under which cgroup mounts and /sys are found")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	reader, err := limits.NewReader(*procRoot, *fsRoot)
	if err != nil {
		return fmt.Errorf("read cgroup mounts: %w", err)
	}
	kern, err := affinity.ProbeKernel(*fsRoot)
	if err != nil {
		return err
	}
	ln, err := listen(*socket)
	if err != nil {
		return err
	}
	a := &agent{
		log:    logrus.NewEntry(logger),
		reader: reader,
		kernel: kern,
		proc:   *procRoot,
		gate:   new(sync.RWMutex),
	}
	a.log.WithFields(logrus.Fields{"socket": *socket, "cgroups": reader.Mode(), "nr_cpu_ids": kern.NrCPUIDs,
		"cpumask_size": kern.MaskSize, "version": version}).Info("seccompagent serving")

	// A log reader that goes away must not take the agent (and with it
	// every container's trapped calls) down.
	signal.Ignore(syscall.SIGPIPE)
	// Each listener keeps one thread in RECV or poll; Go's default cap of
	// 10000 threads is fatal when reached, so leave room for many
	// containers and their execs.
	debug.SetMaxThreads(100000)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		a.log.WithField("signal", s.String()).Info("shutting down: no new containers, finishing in-flight notifications")
		ln.Close()
	}()
	a.acceptLoop(ln)
	os.Remove(*socket)
	// Wait for every notification being answered; new ones wait here
	// until the process exits.
	done := make(chan struct{})
	go func() { a.gate.Lock(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		a.log.Warn("in-flight notifications did not finish within 5s")
	}
	a.log.Info("seccompagent stopped")
	return nil
}

func newLogger(w io.Writer, level, format string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	l.SetLevel(lv)
	switch format {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	return l, nil
}

// listen creates the root-only socket: directory 0700, socket 0600. A stale
// socket file is replaced; a live one means another agent is serving.
func listen(path string) (*net.UnixListener, error) {
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

type agent struct {
	log    *logrus.Entry
	reader *limits.Reader
	kernel affinity.Kernel
	proc   string
	gate   *sync.RWMutex
	inits  initPids
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

func (a *agent) acceptLoop(ln *net.UnixListener) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			a.log.WithError(err).Warn("accept failed")
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		go a.serveConn(conn)
	}
}

// serveConn takes one runtime connection: check the peer, receive the state
// and the listener fd, then serve that fd until its container is gone.
func (a *agent) serveConn(conn *net.UnixConn) {
	log := a.log
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
		c.InitPid = a.inits.lookup(c.ID)
	} else {
		a.inits.add(c.ID, c.InitPid)
		defer a.inits.remove(c.ID, c.InitPid)
	}
	log = log.WithFields(logrus.Fields{"container": c.ID, "pid": rcv.State.Pid, "status": st.Status})

	policy, err := affinity.ParsePolicy(c.Annotations[affinity.Annotation])
	if err != nil {
		log.WithError(err).Warn("ignoring annotation, using quota")
	}
	reg := notify.NewRegistry()
	regErr := errors.Join(
		reg.Register("sysinfo", &sysinfo.Handler{Limits: a.reader, Host: sysinfo.RealHost, ProcRoot: a.proc, Log: log}),
		reg.Register("sched_getaffinity", &affinity.Handler{Limits: a.reader, Kernel: a.kernel, Policy: policy, ProcRoot: a.proc, Log: log}),
	)
	if regErr != nil {
		// Only possible with a broken libseccomp; every call is
		// answered CONTINUE then, which is the kernel's answer.
		log.WithError(regErr).Error("cannot resolve syscall numbers")
	}
	syncWake := notify.EnableSyncWakeUp(rcv.Fd)
	loop := &notify.Loop{Fd: rcv.Fd, Container: c, Registry: reg, Kernel: notify.KernelFor(syncWake), ProcRoot: a.proc, Gate: a.gate, Log: log}
	log.WithField("sync_wake_up", syncWake).Info("container attached")
	if err := loop.Run(); err != nil {
		log.WithError(err).Error("notification loop stopped; trapped calls of this container now fail with ENOSYS")
	}
	unix.Close(rcv.Fd)
	log.Info("container detached")
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

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/sirupsen/logrus"
)

// The view socket answers "what are my limits?" for any process that can
// connect to it, containers included: the agent asks the kernel who the peer
// is (SO_PEERCRED), writes one JSON document about that peer's own cgroups
// and hangs up. It never reads what the peer sends, so nothing a peer writes
// can make it answer about another process.

// ViewDocument is what the view socket writes: the `explain --json` view
// (docs/explain.md) of the connecting process, plus the number of CPUs its
// sched_getaffinity shows, i.e. how many threads to start. Pid is the peer's
// pid as the peer itself sees it (its own pid namespace).
type ViewDocument struct {
	*limits.View
	RecommendedThreads int `json:"recommended_threads"`
}

// viewError is written instead when the peer's limits cannot be read; the
// trapped calls of such a process get the host's answers.
type viewError struct {
	Error string `json:"error"`
}

// ViewLimits is what the view server needs from limits.Reader.
type ViewLimits interface {
	View(pid int) (*limits.View, error)
}

// ViewConfig bounds what peers can make the agent do.
type ViewConfig struct {
	Socket string
	// WriteTimeout bounds each answer (a peer that never reads costs
	// at most this long, and the answer fits the socket buffer anyway).
	WriteTimeout time.Duration
	// MaxConns bounds answers in progress; more are closed unanswered.
	MaxConns int
	// MaxPerPeer bounds answers in progress for one peer (see peerKey).
	MaxPerPeer int
	// Rate and Burst are a token bucket per peer: answers per second.
	Rate  float64
	Burst float64
	// MaxPeers bounds the rate-limit table; idle entries are dropped first.
	MaxPeers int
}

// DefaultViewConfig is what `serve` uses.
func DefaultViewConfig(socket string) ViewConfig {
	return ViewConfig{Socket: socket, WriteTimeout: time.Second, MaxConns: 256, MaxPerPeer: 4,
		Rate: 20, Burst: 40, MaxPeers: 4096}
}

// ViewServer serves the view socket.
type ViewServer struct {
	cfg      ViewConfig
	limits   ViewLimits
	kernel   affinity.Kernel
	procRoot string
	// policy says which seccompagent.io/cpus applies to a host pid.
	policy func(pid int) affinity.Policy
	log    *logrus.Entry

	sem   chan struct{}
	peers peerTable
	wg    sync.WaitGroup
	// sleep is time.Sleep; tests count the back-offs.
	sleep func(time.Duration)
	now   func() time.Time
	// selfPidNSIno is the agent's own pid namespace: peers in it are
	// keyed by cgroup, others by pid namespace.
	selfPidNSIno uint64
}

// NewViewServer prepares a view server; Serve runs it.
func NewViewServer(cfg ViewConfig, lim ViewLimits, kernel affinity.Kernel, procRoot string,
	policy func(pid int) affinity.Policy, log *logrus.Entry) *ViewServer {
	if policy == nil {
		policy = func(int) affinity.Policy { return affinity.Policy{} }
	}
	var self uint64
	if st, err := os.Stat(filepath.Join(procRoot, "self/ns/pid")); err == nil {
		self = st.Sys().(*syscall.Stat_t).Ino
	}
	return &ViewServer{cfg: cfg, limits: lim, kernel: kernel, procRoot: procRoot, policy: policy, log: log,
		sem: make(chan struct{}, cfg.MaxConns), peers: peerTable{m: map[string]*peer{}},
		sleep: time.Sleep, now: time.Now, selfPidNSIno: self}
}

// ListenView creates the view socket: its own directory 0755 and the socket
// 0666, because untrusted containers connect to it. Whatever is at the path
// is replaced: the socket holds no state, and an agent taking over from
// another must serve it.
func ListenView(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create view socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("view socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old view socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on view socket %s: %w", path, err)
	}
	// Set the mode after bind (not through the umask, which is
	// process-wide and would race other goroutines creating files).
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("view socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// acceptor is what Serve needs of a listener (*net.UnixListener).
type acceptor interface {
	AcceptUnix() (*net.UnixConn, error)
}

// Serve accepts until ln is closed, then waits for the answers in progress
// (each bounded by WriteTimeout).
func (v *ViewServer) Serve(ln acceptor) {
	var b backoff
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// EMFILE/ENFILE/ENOBUFS: the pending connection stays in the
			// backlog and accept would fail again at once; wait, longer
			// each time, instead of spinning.
			d := b.next()
			v.log.WithError(err).WithField("retry_in", d).Warn("view socket: accept failed")
			v.sleep(d)
			continue
		}
		b.reset()
		v.admit(conn)
	}
	v.wg.Wait()
}

// admit decides, without blocking, whether conn gets an answer: the kernel
// names the peer, and the peer's budget and the global one must allow it.
// Everything that waits on the peer happens in answer's goroutine.
func (v *ViewServer) admit(conn *net.UnixConn) {
	// Whatever the peer sends is never read: shut reading down so that
	// its writes fail (EPIPE) instead of queuing here.
	_ = conn.CloseRead()
	cred, pidfd, err := viewPeer(conn)
	if err != nil || cred.Pid <= 0 {
		// Pid 0: the peer's pid namespace is not visible from ours.
		v.log.WithError(err).Debug("view socket: peer has no pid in the agent's pid namespace")
		conn.Close()
		return
	}
	log := v.log.WithField("pid", cred.Pid)
	key, err := v.peerKey(int(cred.Pid))
	if err != nil {
		log.WithError(err).Debug("view socket: peer gone")
		closePidfd(pidfd)
		conn.Close()
		return
	}
	select {
	case v.sem <- struct{}{}:
	default:
		log.Debug("view socket: too many connections, closing unanswered")
		closePidfd(pidfd)
		conn.Close()
		return
	}
	if !v.peers.take(key, v.now(), v.cfg) {
		<-v.sem
		log.WithField("peer", key).Debug("view socket: peer over its rate or connection limit, closing unanswered")
		closePidfd(pidfd)
		conn.Close()
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer func() { <-v.sem }()
		defer v.peers.done(key)
		defer conn.Close()
		defer closePidfd(pidfd)
		v.answer(conn, int(cred.Pid), pidfd, log)
	}()
}

// answer computes the peer's view and writes it.
func (v *ViewServer) answer(conn *net.UnixConn, pid, pidfd int, log *logrus.Entry) {
	start, err := v.startTime(pid)
	if err != nil {
		return
	}
	doc, err := v.Document(pid)
	// The pid must still name the process that connected: with a pidfd
	// (SO_PEERPIDFD, Linux 6.5) the process is alive, so its pid was not
	// reused; without one its start time must not have changed. Either
	// way, if it changed nobody would be there to read the answer but
	// another process (one that was handed the socket) would: say nothing.
	if !v.samePeer(pid, pidfd, start) {
		log.Debug("view socket: peer exited before its answer was ready")
		return
	}
	var out []byte
	if err != nil {
		log.WithError(err).Debug("view socket: cannot read the peer's limits")
		out, _ = json.Marshal(viewError{Error: "cannot read this process's limits; trapped calls get the host's values"})
	} else if out, err = json.MarshalIndent(doc, "", "  "); err != nil {
		return
	}
	out = append(out, '\n')
	_ = conn.SetWriteDeadline(v.now().Add(v.cfg.WriteTimeout))
	if _, err := conn.Write(out); err != nil {
		log.WithError(err).Debug("view socket: write failed")
	}
}

// Document computes what the view socket tells process pid (a pid in the
// agent's pid namespace).
func (v *ViewServer) Document(pid int) (*ViewDocument, error) {
	view, err := v.limits.View(pid)
	if err != nil {
		return nil, err
	}
	mask := make([]byte, v.kernel.MaskSize)
	if _, err := getaffinity(pid, mask); err != nil {
		return nil, fmt.Errorf("sched_getaffinity(%d): %w", pid, err)
	}
	k := RecommendedThreads(mask, view.CPU, v.policy(pid))
	if nspid, err := nsPid(v.procRoot, pid); err == nil {
		view.Pid = nspid
	}
	return &ViewDocument{View: view, RecommendedThreads: k}, nil
}

// RecommendedThreads is the number of CPUs sched_getaffinity shows a thread
// whose real mask is mask: the affinity handler's answer, counted.
func RecommendedThreads(mask []byte, cpu limits.CPU, p affinity.Policy) int {
	m := append([]byte(nil), mask...)
	if !p.Off {
		k := p.Count
		if k == 0 && cpu.Count.Limited {
			k = int(cpu.Count.Value)
		}
		if k > 0 {
			affinity.KeepLowest(m, k)
		}
	}
	n := 0
	for _, b := range m {
		n += bits.OnesCount8(b)
	}
	return n
}

// startView listens on cfg.ViewSocket (when set) and serves it until the
// returned stop is called; stop closes the listener, removes the socket
// and waits for the answers in progress.
func (s *Server) startView() (stop func(), err error) {
	if s.cfg.ViewSocket == "" {
		return func() {}, nil
	}
	if filepath.Dir(s.cfg.ViewSocket) == filepath.Dir(s.cfg.Socket) {
		// Its directory is world-readable and bind-mounted into
		// containers: it must not hold the root-only socket.
		return nil, fmt.Errorf("view socket %s: needs a directory of its own, not the agent socket's", s.cfg.ViewSocket)
	}
	ln, err := ListenView(s.cfg.ViewSocket)
	if err != nil {
		return nil, err
	}
	self, _ := os.Readlink(filepath.Join(s.cfg.ProcRoot, "self/ns/pid"))
	pf := &policyFinder{procRoot: s.cfg.ProcRoot, selfNS: self, containers: s.containers}
	vs := NewViewServer(DefaultViewConfig(s.cfg.ViewSocket), s.reader, s.kernel, s.cfg.ProcRoot,
		pf.policy, s.log.WithField("view_socket", s.cfg.ViewSocket))
	ours, _ := os.Stat(s.cfg.ViewSocket)
	done := make(chan struct{})
	go func() { vs.Serve(ln); close(done) }()
	return func() {
		ln.Close()
		// A newer agent taking over has made a socket of its own at
		// the path by now: remove only ours.
		if cur, err := os.Stat(s.cfg.ViewSocket); err == nil && ours != nil && os.SameFile(ours, cur) {
			os.Remove(s.cfg.ViewSocket)
		}
		<-done
	}, nil
}

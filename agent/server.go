package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/agent/metrics"
	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/limits/loadavg"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Config is what `seccompagent serve` is told.
type Config struct {
	// Socket is the unix socket runtimes connect to.
	Socket string
	// ViewSocket is where processes ask for their own view (view.go);
	// "" turns it off.
	ViewSocket string
	// HolderSocket is the holder's socket; empty means no holder: the
	// listener fds live only in this process, and its exit costs every
	// container ENOSYS for good.
	HolderSocket string
	// SpawnHolder starts a holder serving HolderSocket, detached from
	// this process (cmd/seccompagent re-executes itself as `hold`).
	SpawnHolder func() error
	// Systemd keeps the listener fds in systemd's file-descriptor store
	// instead of a holder process (the unit needs
	// FileDescriptorStoreMax=); HolderSocket is then ignored.
	Systemd bool
	// ProcRoot is the procfs mount ("/proc").
	ProcRoot string
	// FSRoot is the root under which cgroup mounts and /sys are found ("/").
	FSRoot string
	// NoSyncWakeUp keeps the loops on the path of kernels without
	// synchronous wake-up (poll, then RECV) even where it exists.
	NoSyncWakeUp bool
	Version      string
	Log          *logrus.Entry
	// Metrics, if set, is told every answer, attach and detach.
	Metrics *metrics.Metrics
	// ControlSocket, if set, is the root-only socket `seccompagent status`
	// asks (status.go).
	ControlSocket string
	// SelfTest, if set, returns the command of the start-up self-test's
	// child (cmd/seccompagent re-executes itself; see SelfTestChild).
	SelfTest func(socket, id string) *exec.Cmd
}

// Server is one running agent.
type Server struct {
	cfg    Config
	log    *logrus.Entry
	reader *limits.Reader
	kernel affinity.Kernel
	inits  initPids
	loads  *loadavg.Sampler
	// budgets bound the agent time each container's calls take.
	budgets budgets
	// poller holds idle listeners on kernels without synchronous
	// wake-up (made with the first such listener).
	pollerOnce sync.Once
	poller     *notify.Poller
	// attaching bounds the connections decoded and attached at once.
	attaching chan struct{}

	journal *journal
	ln      *net.UnixListener
	warn    *warnLimiter // misconfiguration fail-opens, at Warn

	// For status (status.go) and the self-test (selftest.go).
	control  *net.UnixListener
	stats    sync.Map // *notify.Loop → *loopStats
	since    time.Time
	previous string
	selfTest *selfTest

	hmu      sync.Mutex // guards hfd: sends to the holder
	hfd      int        // connection to the holder, -1 without one
	sd       *sdStore   // systemd's fd store, when it is the holder
	mu       sync.Mutex
	attached map[uint64]*attached

	stopping  atomic.Bool
	stopOnce  sync.Once
	stopCh    chan string // why Run must stop
	receiving sync.WaitGroup
	loops     sync.WaitGroup
	started   sync.WaitGroup // adopted loops not yet receiving

	// features are the kernel's notify behaviour, probed once.
	features notify.Features
}

// attached is one container listener being served.
type attached struct {
	key  uint64
	fd   int
	meta listenerMeta
	loop *notify.Loop
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
	features, err := notify.ProbeFeatures()
	if err != nil {
		cfg.Log.WithError(err).Warn("kernel probe failed: polling before every receive")
	}
	cfg.Log.WithField("features", fmt.Sprintf("%+v", features)).Info("kernel notify features")
	return &Server{cfg: cfg, log: cfg.Log, reader: reader, kernel: kern, hfd: -1, attaching: attachSlots(),
		warn: newWarnLimiter(warnInterval), selfTest: newSelfTest(cfg.SelfTest != nil),
		attached: map[uint64]*attached{}, stopCh: make(chan string, 1), features: features,
		loads: &loadavg.Sampler{ProcRoot: cfg.ProcRoot, Resolve: reader.LoadCgroup, Log: cfg.Log}}, nil
}

// Run serves until ctx is cancelled or a newer agent takes over
// (ErrHandedOver). Either way it stops accepting, lets every loop answer the
// notification in its hands, and returns; with a holder, the containers'
// listeners stay open there for the next agent, and their calls wait in the
// kernel's queue meanwhile.
//
// The caller must then exit or exec: loops blocked in the kernel may still
// receive (see notify.Loop.Stop), and the holder takes the end of this
// process's connection, which only exit or exec closes, as the proof that
// nothing here answers any more; only then does the next agent start.
func (s *Server) Run(ctx context.Context) error {
	// Each listener keeps one thread in RECV or poll; Go's default cap of
	// 10000 threads is fatal when reached, so leave room for many
	// containers and their execs.
	debug.SetMaxThreads(100000)
	go s.loads.Run(ctx)
	stopView, err := s.startView()
	if err != nil {
		return err
	}
	defer stopView()

	var entries []entry
	previous := "none"
	switch {
	case s.cfg.Systemd:
		if s.sd = newSDStore(s.log); s.sd == nil {
			return errors.New("--holder=systemd needs $NOTIFY_SOCKET: run it from a systemd unit with Type=notify and FileDescriptorStoreMax=")
		}
		entries, previous = sdEntries(s.sd, s.log), "systemd"
	case s.cfg.HolderSocket != "":
		var err error
		if entries, previous, err = s.connectHolder(0); err != nil {
			return err
		}
	}
	if err := s.setUp(entries); err != nil {
		s.closeHolder()
		return err
	}
	// "serving" means every adopted listener is being received from.
	s.started.Wait()
	s.log.WithFields(logrus.Fields{"socket": s.cfg.Socket, "view_socket": s.cfg.ViewSocket, "holder": s.cfg.HolderSocket, "cgroups": s.reader.Mode(),
		"nr_cpu_ids": s.kernel.NrCPUIDs, "cpumask_size": s.kernel.MaskSize, "version": s.cfg.Version,
		"adopted": len(s.attached), "previous_agent": previous}).Info("seccompagent serving")
	s.since, s.previous = time.Now(), previous
	if s.cfg.SelfTest != nil {
		s.cfg.Metrics.SelfTestRunning()
	}
	s.cfg.Metrics.Serving(previous, len(s.attached), s.since)
	if s.cfg.ControlSocket != "" {
		if err := s.listenControl(); err != nil {
			s.log.WithError(err).Warn("no control socket: `seccompagent status` cannot reach this agent")
		}
	}
	if s.cfg.SelfTest != nil {
		go s.runSelfTest()
	}
	if s.hfd >= 0 {
		go s.watchHolder()
	}
	if sd := newSDStore(s.log); sd != nil {
		// Type=notify units: the engines ordered after us start now.
		_ = sd.notify("READY=1\nSTATUS=serving", -1)
	}
	go s.acceptLoop()
	var why string
	select {
	case <-ctx.Done():
		why = "signal"
	case why = <-s.stopCh:
	}
	s.cfg.Metrics.Stopping()
	if s.control != nil {
		s.control.Close()
	}
	s.stop(why)
	if why == "handover" {
		return ErrHandedOver
	}
	return nil
}

// ErrHandedOver is what Run returns when a newer agent took over.
var ErrHandedOver = errors.New("a newer agent took over")

func (s *Server) requestStop(why string) {
	s.stopOnce.Do(func() { s.stopCh <- why })
}

// stop ends serving: no new runtime connection is taken, the ones being
// received are finished (their fds reach the holder), every loop answers
// what it holds and stops.
func (s *Server) stop(why string) {
	s.stopping.Store(true)
	s.log.WithField("reason", why).Info("stopping: no new containers, finishing the notifications in hand")
	s.ln.Close() // our copy: the holder keeps the socket listening
	s.receiving.Wait()
	s.mu.Lock()
	for _, a := range s.attached {
		a.loop.Stop()
	}
	s.mu.Unlock()
	// Wait until no loop is answering a notification. Loops blocked in
	// the kernel hold nothing and may stay blocked (see notify.Loop.Stop);
	// one that receives a notification after this is journaled, and the
	// next agent answers it once this process is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		busy := 0
		for _, a := range s.attached {
			if a.loop.Busy() {
				busy++
			}
			a.loop.Stop() // again: a signal may land just before a poll
		}
		s.mu.Unlock()
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.log.WithField("busy", busy).Warn("some notifications were still being answered after 5s; the next agent answers them from the journal")
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s.hfd >= 0 || s.sd != nil {
		s.send(frame{Op: "bye"}, -1)
		s.log.WithField("held", len(s.attached)).Info("seccompagent stopped; the holder keeps the containers' listeners for the next agent")
	} else {
		s.log.Info("seccompagent stopped")
	}
}

// entry is one fd the holder gave us.
type entry struct {
	kind string
	key  uint64
	meta json.RawMessage
	fd   int
}

// connectHolder attaches to the holder (starting one if none runs) and
// receives what it holds. If another agent serves, the holder asks it to
// hand over first, so this returns once that agent has exited.
func (s *Server) connectHolder(patience time.Duration) ([]entry, string, error) {
	fd, err := dialHolder(s.cfg.HolderSocket)
	// A holder being replaced by a newer one leaves the socket path
	// unbound for a moment: wait for the newer one rather than start a
	// third.
	for end := time.Now().Add(patience); err != nil && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		fd, err = dialHolder(s.cfg.HolderSocket)
	}
	if err != nil && s.cfg.SpawnHolder != nil {
		if serr := s.cfg.SpawnHolder(); serr != nil {
			return nil, "", fmt.Errorf("start the holder: %w", serr)
		}
		deadline := time.Now().Add(15 * time.Second)
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			fd, err = dialHolder(s.cfg.HolderSocket)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("holder socket %s not reachable: %w", s.cfg.HolderSocket, err)
	}
	if err := sendFrame(fd, frame{Op: "hello", Role: "agent", Version: handoffVersion}, -1); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("greet the holder: %w", err)
	}
	var entries []entry
	for {
		f, got, err := recvFrame(fd)
		if err != nil {
			for _, e := range entries {
				unix.Close(e.fd)
			}
			unix.Close(fd)
			return nil, "", fmt.Errorf("receive from the holder: %w", err)
		}
		switch f.Op {
		case "entry":
			if got >= 0 {
				entries = append(entries, entry{kind: f.Kind, key: f.Key, meta: f.Meta, fd: got})
			}
		case "ready":
			s.hmu.Lock()
			s.hfd = fd
			s.hmu.Unlock()
			return entries, f.Previous, nil
		default:
			if got >= 0 {
				unix.Close(got)
			}
		}
	}
}

func (s *Server) closeHolder() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.hfd >= 0 {
		unix.Close(s.hfd)
		s.hfd = -1
	}
}

// send gives the holder one frame; a failure is left to watchHolder, which
// reconnects and sends everything again.
func (s *Server) send(f frame, fd int) {
	if s.sd != nil {
		s.sd.apply(f, fd)
		return
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.hfd < 0 {
		return
	}
	if err := sendFrame(s.hfd, f, fd); err != nil {
		s.log.WithError(err).Debug("send to the holder failed")
	}
}

// setUp takes the listening socket, the journal and the listeners from the
// holder's entries, creating what is missing.
func (s *Server) setUp(entries []entry) error {
	var listeners []entry
	for _, e := range entries {
		switch {
		case e.kind == kindSocket && s.ln == nil:
			f := os.NewFile(uintptr(e.fd), "runtime-socket")
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("runtime socket from the holder: %w", err)
			}
			s.ln = l.(*net.UnixListener)
			s.ln.SetUnlinkOnClose(false)
		case e.kind == kindJournal && s.journal == nil:
			j, err := openJournal(e.fd)
			if err != nil {
				s.log.WithError(err).Warn("journal from the holder unusable: notifications a crashed agent held are answered only by probing ids")
				unix.Close(e.fd)
				continue
			}
			s.journal = j
		case e.kind == kindListener:
			listeners = append(listeners, e)
		default:
			unix.Close(e.fd)
		}
	}
	if s.ln == nil {
		ln, err := Listen(s.cfg.Socket)
		if err != nil {
			return err
		}
		s.ln = ln
		s.putListeningSocket()
	}
	if s.journal == nil {
		j, err := newJournal()
		if err != nil {
			return err
		}
		s.journal = j
		s.send(frame{Op: "put", Kind: kindJournal, Key: 1}, j.fd)
	}
	for _, e := range listeners {
		s.adopt(e)
	}
	s.journal.dropTagged()
	return nil
}

func (s *Server) putListeningSocket() {
	raw, err := s.ln.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) { s.send(frame{Op: "put", Kind: kindSocket, Key: 2}, int(fd)) })
}

// adopt serves a listener a previous agent (or the holder) received. The
// notifications that agent took and never answered are answered first.
func (s *Server) adopt(e entry) {
	var meta listenerMeta
	if err := json.Unmarshal(e.meta, &meta); err != nil {
		s.log.WithError(err).Warn("listener from the holder has unreadable metadata: serving it without container details")
		meta.Slot = -1
	}
	claimed := meta.Slot >= 0 && s.journal.claim(meta.Slot, e.key)
	var orphans []orphan
	if claimed {
		if p, ok := s.journal.last(meta.Slot, e.key); ok {
			orphans = append(orphans, orphan{p: p, slot: -1})
		}
	}
	// The slots of the previous agent's helper receivers for it.
	for _, slot := range s.journal.orphanSlots(e.key) {
		p, ok := s.journal.last(slot, e.key)
		if !ok {
			p.ID = 0
		}
		orphans = append(orphans, orphan{p: p, slot: slot})
	}
	if !claimed {
		meta.Slot = s.journal.alloc(e.key)
		b, _ := json.Marshal(meta)
		s.send(frame{Op: "put", Kind: kindListener, Key: e.key, Meta: b}, e.fd)
	}
	s.start(e.key, e.fd, meta, orphans)
}

// orphan is a notification a dead agent's receiver left in a journal slot
// (slot ≥ 0: a helper's, released once answered).
type orphan struct {
	p    notify.Pending
	slot int
}

// recoverOrphans answers the notification of a listener that a dead agent
// received and never answered, found in its journal slot. The kernel calls
// a notification valid (ID_VALID) only while it is received and unanswered,
// and nobody else receives on the listener before this returns, so a valid
// id there is exactly such an orphan; it gets the answer it would have got.
func (s *Server) recoverOrphans(a *attached, orphans []orphan, log *logrus.Entry) {
	for _, o := range orphans {
		if o.p.ID != 0 && notify.IDValid(a.fd, o.p.ID) {
			log.WithField("id", o.p.ID).Info("answering a notification the previous agent received and never answered")
			a.loop.Answer(&o.p)
		}
		s.journal.release(o.slot)
	}
}

// start runs the loop for one listener.
func (s *Server) start(key uint64, fd int, meta listenerMeta, orphans []orphan) {
	st := meta.State.State
	c := &notify.Container{ID: st.ID, InitPid: st.Pid, Annotations: st.Annotations}
	if c.InitPid == 0 {
		// crun 1.8 sends neither pid for an exec: use the init we saw
		// when the container was created (else the handlers find pid 1
		// of the caller's pid namespace).
		c.InitPid = s.inits.lookup(c.ID)
	} else {
		s.inits.add(c.ID, c.InitPid)
	}
	unregister := func() {}
	if st.Pid != 0 {
		unregister = s.loads.Register(c.InitPid)
	}
	log := s.log.WithFields(logrus.Fields{"container": c.ID, "pid": meta.State.Pid, "status": st.Status})
	a := &attached{key: key, fd: fd, meta: meta, loop: s.newLoop(key, fd, c, meta.Slot, log)}
	s.mu.Lock()
	s.attached[key] = a
	s.mu.Unlock()
	s.loops.Add(1)
	s.started.Add(1)
	go func() {
		defer s.loops.Done()
		s.recoverOrphans(a, orphans, log)
		log.WithFields(logrus.Fields{"since": meta.Since.Format(time.RFC3339)}).Info("container attached")
		s.started.Done()
		s.cfg.Metrics.Attached(1)
		defer s.cfg.Metrics.Attached(-1)
		defer s.stats.Delete(a.loop)
		err := a.loop.Run()
		if errors.Is(err, notify.ErrStopped) {
			return // the holder keeps fd for the next agent
		}
		if err != nil {
			log.WithError(err).Error("notification loop stopped; trapped calls of this container now fail with ENOSYS")
		}
		s.mu.Lock()
		delete(s.attached, key)
		s.mu.Unlock()
		s.budgets.release(c.ID)
		// Renewals its calls asked for and no answer will run any more:
		// done now, they drop the entries of threads that are gone, and
		// leave other loops' Later with nothing pending to look at.
		s.reader.Renew(c.InitPid)
		if c.InitPid != 0 && st.Pid != 0 {
			s.inits.remove(c.ID, c.InitPid)
		}
		unregister()
		s.send(frame{Op: "drop", Key: key}, -1)
		s.journal.release(meta.Slot)
		unix.Close(fd)
		log.Info("container detached")
	}()
}

func (s *Server) newLoop(key uint64, fd int, c *notify.Container, slot int, log *logrus.Entry) *notify.Loop {
	policy, err := affinity.ParsePolicy(c.Annotations[affinity.Annotation])
	if err != nil {
		log.WithError(err).Warn("ignoring annotation, using quota")
	}
	reg := notify.NewRegistry()
	regErr := errors.Join(
		reg.Register("sysinfo", &sysinfo.Handler{Limits: s.reader, Host: sysinfo.RealHost, ProcRoot: s.cfg.ProcRoot, LoadAvg: s.loads, Log: log}),
		reg.Register("sched_getaffinity", &affinity.Handler{Limits: s.reader, Kernel: s.kernel, Policy: policy, ProcRoot: s.cfg.ProcRoot, Log: log}),
	)
	if regErr != nil {
		// Only possible with a broken libseccomp; every call is
		// answered CONTINUE then, which is the kernel's answer.
		log.WithError(regErr).Error("cannot resolve syscall numbers")
	}
	kern, syncWake := notify.KernelFor(false), false
	if !s.cfg.NoSyncWakeUp {
		kern, syncWake = s.features.KernelFor(fd)
	}
	loop := &notify.Loop{Fd: fd, Container: c, Registry: reg, Kernel: kern, Log: log,
		Receivers: receiversPerListener, Budget: s.budgets.acquire(c.ID, c.InitPid, s.reader)}
	loop.Observe = s.observeLoop(loop, log)
	loop.Later = func() { s.reader.Renew(c.InitPid) }
	if !syncWake {
		s.pollerOnce.Do(func() {
			var err error
			if s.poller, err = notify.NewPoller(); err != nil {
				s.log.WithError(err).Warn("no shared poller: every idle listener keeps a thread")
			}
		})
		loop.Poller = s.poller
	}
	if slot >= 0 {
		var j notify.Journal = slotJournal{j: s.journal, slot: slot, key: key}
		if !isSelfTestID(c.ID) {
			// The restart tests' stall hook is for a container's call.
			j = testStall(j, log)
		}
		loop.Journal = j
	}
	return loop
}

// watchHolder waits for the holder's word: "handover" (a newer agent
// started) stops this one; a lost connection (the holder was killed) is
// repaired by starting a holder again and giving it everything anew.
func (s *Server) watchHolder() {
	for {
		s.hmu.Lock()
		fd := s.hfd
		s.hmu.Unlock()
		if fd < 0 {
			return
		}
		f, got, err := recvFrame(fd)
		if got >= 0 {
			unix.Close(got)
		}
		if err == nil {
			if f.Op == "handover" {
				s.log.Info("a newer agent started: handing over")
				s.requestStop("handover")
				return
			}
			continue
		}
		if s.stopping.Load() {
			return
		}
		s.log.WithError(err).Warn("lost the holder: starting it again and handing it every listener")
		s.closeHolder()
		s.reconnectHolder()
	}
}

func (s *Server) reconnectHolder() {
	for !s.stopping.Load() {
		entries, _, err := s.connectHolder(2 * time.Second)
		if err != nil {
			s.log.WithError(err).Error("holder unavailable; retrying (an agent crash now would cost the containers ENOSYS)")
			time.Sleep(time.Second)
			continue
		}
		s.putListeningSocket()
		s.send(frame{Op: "put", Kind: kindJournal, Key: 1}, s.journal.fd)
		s.mu.Lock()
		for _, a := range s.attached {
			b, _ := json.Marshal(a.meta)
			s.send(frame{Op: "put", Kind: kindListener, Key: a.key, Meta: b}, a.fd)
		}
		known := map[uint64]bool{}
		for k := range s.attached {
			known[k] = true
		}
		s.mu.Unlock()
		for _, e := range entries {
			if e.kind == kindListener && !known[e.key] {
				s.adopt(e) // accepted by that holder while we were apart
			} else {
				unix.Close(e.fd)
			}
		}
		s.log.Info("holder back: every listener handed to it again")
		return
	}
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

func (s *Server) acceptLoop() {
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.stopping.Load() {
				return
			}
			s.log.WithError(err).Warn("accept failed")
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.receiving.Add(1)
		go s.serveConn(conn)
	}
}

// serveConn takes one runtime connection: check the peer, receive the state
// and the listener fd, hand a copy to the holder, then serve the fd until
// its container is gone.
func (s *Server) serveConn(conn *net.UnixConn) {
	defer s.receiving.Done()
	log := s.log
	if err := checkPeer(conn); err != nil {
		log.WithError(err).Warn("rejected connection")
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	awaitData(conn)
	s.attaching <- struct{}{}
	defer func() { <-s.attaching }()
	peer := peerRuntime(conn, s.cfg.ProcRoot)
	rcv, err := notify.ReceiveState(conn, 5*time.Second)
	conn.Close()
	if errors.Is(err, notify.ErrNoData) {
		// seccompagent-runtime checks the socket this way before every
		// container; crun does it too when container setup fails.
		log.Debug("connection closed without a container state")
		return
	}
	if err == nil {
		if err = notify.CheckListener(rcv.Fd); err != nil {
			unix.Close(rcv.Fd)
		}
	}
	if err != nil {
		log.WithError(err).Warn("rejected connection: not a valid seccomp listener message")
		return
	}
	key := rand.Uint64() | 1
	meta := listenerMeta{State: rcv.State, Slot: s.journal.alloc(key), Since: time.Now(), Runtime: peer}
	// The holder gets its copy before the first notification is
	// answered: from here on this process may die at any instant.
	b, _ := json.Marshal(meta)
	s.send(frame{Op: "put", Kind: kindListener, Key: key, Meta: b}, rcv.Fd)
	s.start(key, rcv.Fd, meta, nil)
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

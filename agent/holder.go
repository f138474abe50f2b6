package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// HolderConfig is what `seccompagent hold` is told.
type HolderConfig struct {
	// Socket is the holder's own socket (root only).
	Socket string
	// IdleExit: with no agent connected and no container left to hold
	// for this long, the holder exits (closing the runtime socket, so
	// runtimes fail fast again instead of waiting). 0 means never.
	IdleExit time.Duration
	// WaitAfterTakeover: once a newer holder took everything, idle (until
	// the process is stopped) instead of exiting, for supervisors that
	// restart whatever exits (a Kubernetes pod being replaced).
	WaitAfterTakeover bool
	Log               *logrus.Entry
}

// DefaultHolderSocket is the holder's socket next to the agent's.
func DefaultHolderSocket(agentSocket string) string {
	return filepath.Join(filepath.Dir(agentSocket), "holder.sock")
}

// held is one fd the holder keeps.
type held struct {
	kind string
	key  uint64
	meta json.RawMessage
	fd   int
}

type holderConn struct {
	fd    int
	pid   int32
	hello bool
}

// holder keeps every container's listener fd (and the runtime socket and
// the journal) open while agents come and go. It is deliberately small: a
// single poll loop that stores what it is given and hands it back.
type holder struct {
	cfg     HolderConfig
	log     *logrus.Entry
	ln      int
	items   []*held
	conns   []*holderConn
	agent   *holderConn // the agent serving now
	waiting *holderConn // an agent that asked to take over
	asked   time.Time   // when the serving agent was asked to hand over
	said    string      // how the previous agent ended
	idle    time.Time
}

// handoverTimeout is how long an agent asked to hand over may take before
// the holder kills it.
const handoverTimeout = 10 * time.Second

// RunHolder runs the holder until it is idle (see IdleExit) or replaced by
// a newer holder.
func RunHolder(cfg HolderConfig) error {
	h := &holder{cfg: cfg, log: cfg.Log, ln: -1, said: "none", idle: time.Now()}
	// A holder already serving hands everything to this one and exits.
	if err := h.takeOverHolder(); err != nil {
		return err
	}
	ln, err := listenSeqpacket(cfg.Socket)
	if err != nil {
		h.closeAll()
		return err
	}
	h.ln = ln
	_ = os.WriteFile(cfg.Socket+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	h.log.WithFields(logrus.Fields{"socket": cfg.Socket, "held": len(h.items)}).Info("holder serving")
	return h.loop()
}

func listenSeqpacket(path string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return -1, fmt.Errorf("create holder socket directory: %w", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		unix.Close(fd)
		return -1, fmt.Errorf("remove stale holder socket: %w", err)
	}
	old := unix.Umask(0o177)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	unix.Umask(old)
	if err == nil {
		err = unix.Listen(fd, 64)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen on holder socket %s: %w", path, err)
	}
	return fd, nil
}

// takeOverHolder asks a holder already at cfg.Socket for everything it
// holds; it exits once it has sent it.
func (h *holder) takeOverHolder() error {
	fd, err := dialHolder(h.cfg.Socket)
	if err != nil {
		return nil // nobody there
	}
	defer unix.Close(fd)
	if err := sendFrame(fd, frame{Op: "hello", Role: "holder", Version: handoffVersion}, -1); err != nil {
		return fmt.Errorf("take over from the running holder: %w", err)
	}
	for {
		f, got, err := recvFrame(fd)
		if err != nil {
			h.closeAll()
			return fmt.Errorf("take over from the running holder: %w", err)
		}
		switch f.Op {
		case "entry":
			h.put(f, got)
		case "ready":
			h.log.WithField("held", len(h.items)).Info("took over from the previous holder")
			return nil
		default:
			if got >= 0 {
				unix.Close(got)
			}
		}
	}
}

func (h *holder) put(f frame, fd int) {
	if fd < 0 {
		return
	}
	for i, it := range h.items {
		if it.key == f.Key && it.kind == f.Kind {
			unix.Close(it.fd)
			h.items[i] = &held{kind: f.Kind, key: f.Key, meta: f.Meta, fd: fd}
			return
		}
	}
	h.items = append(h.items, &held{kind: f.Kind, key: f.Key, meta: f.Meta, fd: fd})
}

func (h *holder) drop(key uint64) {
	for i, it := range h.items {
		if it.key == key {
			unix.Close(it.fd)
			h.items = append(h.items[:i], h.items[i+1:]...)
			return
		}
	}
}

func (h *holder) closeAll() {
	for _, it := range h.items {
		unix.Close(it.fd)
	}
	h.items = nil
}

func (h *holder) find(kind string) *held {
	for _, it := range h.items {
		if it.kind == kind {
			return it
		}
	}
	return nil
}

func (h *holder) listeners() int {
	n := 0
	for _, it := range h.items {
		if it.kind == kindListener {
			n++
		}
	}
	return n
}

// loop is the holder's only thread of work.
func (h *holder) loop() error {
	for {
		var pfds []unix.PollFd
		pfds = append(pfds, unix.PollFd{Fd: int32(h.ln), Events: unix.POLLIN})
		for _, c := range h.conns {
			pfds = append(pfds, unix.PollFd{Fd: int32(c.fd), Events: unix.POLLIN})
		}
		nConn := len(h.conns)
		sock := h.find(kindSocket)
		acceptRuntime := sock != nil && h.agent == nil && h.waiting == nil
		if acceptRuntime {
			pfds = append(pfds, unix.PollFd{Fd: int32(sock.fd), Events: unix.POLLIN})
		}
		first := len(pfds)
		var watched []*held
		for _, it := range h.items {
			if it.kind == kindListener {
				// Events 0: only POLLHUP/POLLERR are reported, never the
				// POLLIN of a pending notification (that is the agent's);
				// only POLLHUP says the container is gone.
				pfds = append(pfds, unix.PollFd{Fd: int32(it.fd)})
				watched = append(watched, it)
			}
		}
		_, err := unix.Poll(pfds, 1000)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("holder poll: %w", err)
		}
		now := time.Now()
		if pfds[0].Revents&unix.POLLIN != 0 {
			h.accept()
		}
		for i := 0; i < nConn; i++ {
			if pfds[1+i].Revents != 0 {
				if done := h.serveConn(h.conns[i]); done {
					return nil
				}
			}
		}
		h.conns = h.alive()
		if acceptRuntime && pfds[1+nConn].Revents&unix.POLLIN != 0 {
			h.acceptRuntime(sock.fd)
		}
		for i, it := range watched {
			if notify.ListenerGone(pfds[first+i].Revents) {
				h.drop(it.key)
			}
		}
		if h.agent != nil && h.waiting != nil && now.Sub(h.asked) > handoverTimeout {
			h.log.WithField("agent_pid", h.agent.pid).Warn("agent did not hand over in time: killing it")
			_ = unix.Kill(int(h.agent.pid), unix.SIGKILL)
			h.asked = now // ask again later if it somehow survives
		}
		if h.agent != nil || h.waiting != nil || h.listeners() > 0 {
			h.idle = now
		} else if h.cfg.IdleExit > 0 && now.Sub(h.idle) > h.cfg.IdleExit {
			h.log.Info("holder idle: no agent and no container for a while, exiting")
			h.closeAll()
			unix.Close(h.ln)
			os.Remove(h.cfg.Socket)
			os.Remove(h.cfg.Socket + ".pid")
			return nil
		}
	}
}

func (h *holder) alive() []*holderConn {
	out := h.conns[:0]
	for _, c := range h.conns {
		if c.fd >= 0 {
			out = append(out, c)
		}
	}
	return out
}

func (h *holder) accept() {
	fd, _, err := unix.Accept4(h.ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return
	}
	cred, err := peerCred(fd)
	if err != nil || (cred.Uid != 0 && int(cred.Uid) != os.Geteuid()) {
		unix.Close(fd)
		return
	}
	setBuffers(fd)
	h.conns = append(h.conns, &holderConn{fd: fd, pid: cred.Pid})
}

func (h *holder) closeConn(c *holderConn) {
	if c == h.agent {
		h.drain(c)
	}
	unix.Close(c.fd)
	c.fd = -1
	switch c {
	case h.agent:
		h.agent = nil
		if h.said != "exited" {
			h.said = "lost"
		}
		h.log.WithField("agent_pid", c.pid).Info("agent gone; holding its containers")
		if h.waiting != nil {
			w := h.waiting
			h.waiting = nil
			h.start(w)
		}
	case h.waiting:
		h.waiting = nil
	}
}

// drain applies what the serving agent sent and the holder has not read
// yet, before its connection is closed. A killed agent's last frames stay
// queued on the connection (the kernel keeps them readable after the
// sender is gone), and the holder may come to close it before it has read
// them (a new agent's hello finds the old one dead): closing it unread
// would close the listeners they carry, and their containers would get
// ENOSYS.
func (h *holder) drain(c *holderConn) {
	for i := 0; i < 1<<20; i++ {
		f, fd, err := recvFrameFlags(c.fd, unix.MSG_DONTWAIT)
		if err != nil {
			var errno unix.Errno
			if errors.Is(err, errEOF) || errors.As(err, &errno) {
				return // nothing queued (EAGAIN), the end, or a dead connection
			}
			continue // one bad frame
		}
		switch f.Op {
		case "put":
			h.put(f, fd)
			fd = -1
		case "drop":
			h.drop(f.Key)
		case "bye":
			h.said = "exited"
		}
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// serveConn handles one frame from c; it reports true when the holder must
// exit (a newer holder took everything).
func (h *holder) serveConn(c *holderConn) bool {
	f, fd, err := recvFrame(c.fd)
	if err != nil {
		h.closeConn(c)
		return false
	}
	switch {
	case f.Op == "hello" && f.Role == "holder":
		for _, it := range h.items {
			if err := sendFrame(c.fd, frame{Op: "entry", Kind: it.kind, Key: it.key, Meta: it.meta}, it.fd); err != nil {
				h.log.WithError(err).Error("hand-over to the new holder failed; keep serving")
				h.closeConn(c)
				return false
			}
		}
		if err := sendFrame(c.fd, frame{Op: "ready"}, -1); err != nil {
			h.closeConn(c)
			return false
		}
		h.log.Info("a new holder took over: exiting")
		h.closeAll()
		for _, o := range h.conns {
			if o.fd >= 0 {
				unix.Close(o.fd) // its agent reconnects to the new holder
				o.fd = -1
			}
		}
		unix.Close(h.ln)
		if h.cfg.WaitAfterTakeover {
			h.log.Info("handed everything to the new holder: idle until stopped")
			select {}
		}
		return true
	case f.Op == "hello" && f.Role == "agent":
		c.hello = true
		if h.agent == nil {
			h.start(c)
			break
		}
		// An agent serves: ask it to stop, and give everything to the
		// new one once its connection ends (the process has exited).
		if h.waiting != nil {
			h.closeConn(h.waiting)
		}
		h.waiting, h.asked = c, time.Now()
		if err := sendFrame(h.agent.fd, frame{Op: "handover"}, -1); err != nil {
			h.closeConn(h.agent)
		}
		h.log.WithFields(logrus.Fields{"old_pid": h.agent.pid, "new_pid": c.pid}).Info("new agent: asking the serving one to hand over")
	case f.Op == "put" && c == h.agent:
		h.put(f, fd)
		fd = -1
	case f.Op == "drop" && c == h.agent:
		h.drop(f.Key)
	case f.Op == "bye" && c == h.agent:
		h.said = "exited"
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	return false
}

// start makes c the serving agent and gives it everything held.
func (h *holder) start(c *holderConn) {
	for _, it := range h.items {
		if err := sendFrame(c.fd, frame{Op: "entry", Kind: it.kind, Key: it.key, Meta: it.meta}, it.fd); err != nil {
			h.closeConn(c)
			return
		}
	}
	if err := sendFrame(c.fd, frame{Op: "ready", Previous: h.said}, -1); err != nil {
		h.closeConn(c)
		return
	}
	h.agent, h.said = c, "lost"
	h.log.WithFields(logrus.Fields{"agent_pid": c.pid, "held": len(h.items)}).Info("agent attached to the holder")
}

// acceptRuntime takes a runtime's connection while no agent runs: the
// container starts, and its trapped calls wait in the kernel's queue until
// the next agent receives the listener from us.
func (h *holder) acceptRuntime(lnFd int) {
	fd, _, err := unix.Accept4(lnFd, unix.SOCK_CLOEXEC)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "runtime")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok || checkPeer(uc) != nil {
		return
	}
	rcv, err := notify.ReceiveState(uc, 2*time.Second)
	if err != nil {
		return
	}
	if notify.CheckListener(rcv.Fd) != nil {
		unix.Close(rcv.Fd)
		return
	}
	meta, _ := json.Marshal(listenerMeta{State: rcv.State, Slot: -1, Since: time.Now()})
	h.put(frame{Kind: kindListener, Key: rand.Uint64() | 1, Meta: meta}, rcv.Fd)
	h.log.WithField("container", rcv.State.State.ID).Info("container attached while no agent runs: holding it for the next agent")
}

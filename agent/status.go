package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// StatusFormat is the version of the Status JSON (docs/status.md). Fields
// are only ever added within one format.
const StatusFormat = 1

// Status is what `seccompagent status` shows, from the running agent.
type Status struct {
	Format        int       `json:"format"`
	Version       string    `json:"version"`
	Pid           int       `json:"pid"`
	ServingSince  time.Time `json:"serving_since"`
	PreviousAgent string    `json:"previous_agent"`
	// Healthy is false while the self-test runs or after it failed.
	Healthy    bool              `json:"healthy"`
	SelfTest   SelfTestStatus    `json:"self_test"`
	Kernel     KernelStatus      `json:"kernel"`
	Containers []ContainerStatus `json:"containers"`
}

// SelfTestStatus is the start-up self-test's result.
type SelfTestStatus struct {
	State string `json:"state"` // off, running, passed, failed
	Cause string `json:"cause,omitempty"`
}

// KernelStatus is what the agent found out about the kernel it runs on.
type KernelStatus struct {
	Release    string `json:"release"`
	Cgroups    string `json:"cgroups"` // v1, v2 or hybrid
	NrCPUIDs   int    `json:"nr_cpu_ids"`
	MaskSize   int    `json:"cpumask_size"`
	SyncWakeUp bool   `json:"sync_wake_up"` // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP accepted (6.6+)
	// OrphanWakesRecv: a blocked RECV returns when its container is gone,
	// so loops block in RECV (with sync wake-up) instead of polling first.
	OrphanWakesRecv bool `json:"orphan_wakes_recv"`
	X32             bool `json:"x32"` // the kernel runs x32 callers (their calls are trapped too)
}

// ContainerStatus is one attached listener: a container's init, or one
// exec in it.
type ContainerStatus struct {
	ID         string    `json:"id"`
	InitPid    int       `json:"init_pid"`
	Pid        int       `json:"pid"`
	Runtime    string    `json:"runtime,omitempty"` // the connecting process's name (runc, crun)
	Status     string    `json:"status"`            // as the runtime reported it when connecting
	Since      time.Time `json:"since"`
	Calls      uint64    `json:"calls"`
	FailOpens  uint64    `json:"fail_opens"`
	LastReason string    `json:"last_fail_open,omitempty"` // reason: error
}

// loopStats counts one listener's notifications for status.
type loopStats struct {
	calls, failOpens atomic.Uint64
	mu               sync.Mutex
	lastReason       string
}

func (st *loopStats) record(o notify.Outcome) {
	st.calls.Add(1)
	if !o.Response.Continue {
		return
	}
	st.failOpens.Add(1)
	r := o.Reason
	if o.Err != nil {
		r += ": " + o.Err.Error()
	}
	st.mu.Lock()
	st.lastReason = r
	st.mu.Unlock()
}

// DefaultControlSocket is the status socket next to the agent's.
func DefaultControlSocket(agentSocket string) string {
	return filepath.Join(filepath.Dir(agentSocket), "control.sock")
}

// status collects the agent's state now.
func (s *Server) status() Status {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	state, cause := s.selfTest.result()
	st := Status{
		Format:        StatusFormat,
		Version:       s.cfg.Version,
		Pid:           os.Getpid(),
		ServingSince:  s.since,
		PreviousAgent: s.previous,
		Healthy:       state == SelfTestPassed || state == SelfTestOff,
		SelfTest:      SelfTestStatus{State: state, Cause: cause},
		Kernel: KernelStatus{Release: unix.ByteSliceToString(uts.Release[:]), Cgroups: s.reader.Mode(),
			NrCPUIDs: s.kernel.NrCPUIDs, MaskSize: s.kernel.MaskSize, SyncWakeUp: s.features.SyncWakeUp,
			OrphanWakesRecv: s.features.OrphanWakesRecv, X32: s.features.X32},
		Containers: []ContainerStatus{},
	}
	s.mu.Lock()
	for _, a := range s.attached {
		c := a.loop.Container
		cs := ContainerStatus{ID: c.ID, InitPid: c.InitPid, Pid: a.meta.State.Pid, Runtime: a.meta.Runtime,
			Status: string(a.meta.State.State.Status), Since: a.meta.Since}
		if v, ok := s.stats.Load(a.loop); ok {
			ls := v.(*loopStats)
			cs.Calls, cs.FailOpens = ls.calls.Load(), ls.failOpens.Load()
			ls.mu.Lock()
			cs.LastReason = ls.lastReason
			ls.mu.Unlock()
		}
		st.Containers = append(st.Containers, cs)
	}
	s.mu.Unlock()
	sort.Slice(st.Containers, func(i, j int) bool {
		a, b := st.Containers[i], st.Containers[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Since.Before(b.Since)
	})
	return st
}

// listenControl binds the root-only status socket. A newer agent takes the
// path over from an older one that still serves (an upgrade): the old
// listener keeps its now-unlinked socket until it stops.
func (s *Server) listenControl() error {
	path := s.cfg.ControlSocket
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(false)
	s.control = ln
	go s.serveControl(ln)
	return nil
}

// serveControl answers each connection's one request line: "status".
func (s *Server) serveControl(ln *net.UnixListener) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.WithError(err).Warn("control socket: accept failed")
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.answerControl(conn)
	}
}

func (s *Server) answerControl(conn *net.UnixConn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := checkPeer(conn); err != nil {
		s.log.WithError(err).Warn("control socket: rejected connection")
		return
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	switch req := strings.TrimSpace(line); req {
	case "status":
		_ = json.NewEncoder(conn).Encode(s.status())
	default:
		fmt.Fprintf(conn, "{\"error\":%q}\n", "unknown request "+req+": want status")
	}
}

// QueryStatus asks the agent serving control socket path for its status.
func QueryStatus(path string, timeout time.Duration) (*Status, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("agent control socket %s not reachable: is \"seccompagent serve\" running (as root)? %w", path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("status\n")); err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := json.NewDecoder(conn).Decode(&raw); err != nil {
		return nil, fmt.Errorf("read the agent's status: %w", err)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("agent: %s", e.Error)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decode the agent's status: %w", err)
	}
	return &st, nil
}

// peerRuntime names the process at the other end of a runtime connection
// (/proc/<pid>/comm: "runc", "crun", ...), "" when it cannot be read.
func peerRuntime(conn *net.UnixConn, procRoot string) string {
	raw, err := conn.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil || cred.Pid <= 0 {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/comm", procRoot, cred.Pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// observeLoop is the Loop.Observe of one listener: its status counters,
// the metrics, the misconfiguration warnings and, for the self-test's
// child, the self-test.
func (s *Server) observeLoop(loop *notify.Loop, log *logrus.Entry) func(notify.Outcome) {
	st := &loopStats{}
	s.stats.Store(loop, st)
	self := loop.Container != nil && s.selfTest.isSelfTest(loop.Container.ID)
	base := s.observe(log)
	return func(o notify.Outcome) {
		st.record(o)
		base(o)
		if self {
			s.selfTest.observe(o)
		}
	}
}

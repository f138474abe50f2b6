package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	seccomp "github.com/seccomp/libseccomp-golang"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/notify"
	"golang.org/x/sys/unix"
)

// selfTestTimeout bounds the whole self-test: the child's start, its
// connection, one trapped call and the answer.
const selfTestTimeout = 15 * time.Second

// selfTestPrefix starts the container id the self-test child reports.
const selfTestPrefix = "seccompagent-self-test-"

// Self-test states (Status.SelfTest.State).
const (
	SelfTestOff     = "off"
	SelfTestRunning = "running"
	SelfTestPassed  = "passed"
	SelfTestFailed  = "failed"
)

// selfTest is the result of the start-up self-test: a child of the agent
// traps sysinfo(2) and sched_getaffinity(2) through the whole path a
// container's calls take (runtime socket, peer check, state and fd, holder
// copy, notify loop, ID_VALID, handler, process_vm_writev, respond).
type selfTest struct {
	mu    sync.Mutex
	id    string
	state string
	cause string
	seen  chan notify.Outcome
}

func newSelfTest(on bool) *selfTest {
	st := &selfTest{state: SelfTestOff, seen: make(chan notify.Outcome, 16)}
	if on {
		st.state = SelfTestRunning
	}
	return st
}

// result returns the state and, when failed, the cause.
func (t *selfTest) result() (string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state, t.cause
}

func (t *selfTest) set(state, cause string) {
	t.mu.Lock()
	t.state, t.cause = state, cause
	t.mu.Unlock()
}

// isSelfTestID reports whether container id is a self-test child's, this
// agent's or an earlier one's.
func isSelfTestID(id string) bool { return strings.HasPrefix(id, selfTestPrefix) }

// isSelfTest reports whether container id is this agent's self-test child.
func (t *selfTest) isSelfTest(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id != "" && id == t.id
}

// observe takes the self-test child's outcomes (the first few: the Go
// runtime of the child may ask sched_getaffinity itself, which is as good a
// sample).
func (t *selfTest) observe(o notify.Outcome) {
	select {
	case t.seen <- o:
	default:
	}
}

// selfTestCalls are the syscalls the child makes, each of which must be
// answered for the self-test to pass.
var selfTestCalls = []string{"sysinfo", "sched_getaffinity"}

// runSelfTest starts the child (Config.SelfTest) and waits for the outcome
// of each of its calls. Only answered calls pass; anything else fails,
// naming the cause, and the agent reports unhealthy (log, metric, /healthz,
// status) while it keeps serving: a fail-open agent still never hurts a
// container.
func (s *Server) runSelfTest() {
	t := s.selfTest
	id := fmt.Sprintf("%s%d-%d", selfTestPrefix, os.Getpid(), time.Now().UnixNano())
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
	cmd := s.cfg.SelfTest(s.cfg.Socket, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var cause string
	if err := cmd.Start(); err != nil {
		cause = fmt.Sprintf("cannot start the self-test child: %v", err)
	} else {
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		outcomes := map[string]notify.Outcome{}
		complete := func() bool { return len(outcomes) == len(selfTestCalls) }
		timeout := time.After(selfTestTimeout)
		var childErr error
		childDone, grace := false, (<-chan time.Time)(nil)
	wait:
		for !complete() || !childDone {
			select {
			case o := <-t.seen:
				if _, ok := outcomes[o.Syscall]; !ok && o.Syscall != "" {
					outcomes[o.Syscall] = o
				}
			case childErr = <-exited:
				childDone = true
				// Answers are observed before the child's calls
				// return: give the loop a moment for the last one.
				grace = time.After(time.Second)
			case <-grace:
				break wait
			case <-timeout:
				_ = cmd.Process.Kill()
				if !childDone {
					childErr = <-exited
				}
				break wait
			}
		}
		cause = selfTestCause(outcomes, childErr, strings.TrimSpace(out.String()))
	}
	if cause == "" {
		t.set(SelfTestPassed, "")
		s.cfg.Metrics.SelfTest(true)
		s.log.Info("self-test passed: trapped sysinfo(2) and sched_getaffinity(2) of the agent's child were answered through the full path")
		return
	}
	t.set(SelfTestFailed, cause)
	s.cfg.Metrics.SelfTest(false)
	s.log.WithField("cause", cause).Error("self-test failed: interception cannot work on this host; containers get the host's values (the kernel's answers)")
}

// selfTestCause says why the self-test failed; "" when it passed. A
// fail-open that means the host is misconfigured is named first: it is
// what the operator must fix. A handler that chose the kernel's value for
// the child (reason handler: e.g. the agent's own cgroup is the v2 root,
// which has no memory.current) is no failure of the path, provided another
// call was answered, so that the write into the caller is proven.
func selfTestCause(outcomes map[string]notify.Outcome, childErr error, childOut string) string {
	child := ""
	if childErr != nil || childOut != "" {
		child = fmt.Sprintf(" (child: %v %s)", childErr, childOut)
	}
	var advised, others, handler []string
	answered := 0
	for _, name := range selfTestCalls {
		o, ok := outcomes[name]
		switch {
		case !ok:
			others = append(others, name+": the trapped call never reached the agent"+child)
		case o.Response.Continue:
			c := name + ": fail-open, reason " + o.Reason
			if o.Err != nil {
				c += ": " + o.Err.Error()
			}
			switch advice := misconfiguration(o); {
			case advice != "":
				advised = append(advised, c+": "+advice)
			case o.Reason == notify.ReasonHandler:
				handler = append(handler, c)
			default:
				others = append(others, c)
			}
		case o.Response.Errno != 0:
			others = append(others, fmt.Sprintf("%s: the agent failed a valid call with %v", name, o.Response.Errno))
		default:
			answered++
		}
	}
	if answered == 0 {
		others = append(others, handler...)
	}
	if len(advised)+len(others) == 0 && childErr != nil {
		others = append(others, "the calls were answered but the child failed"+child)
	}
	return strings.Join(append(advised, others...), "; ")
}

// SelfTestChild is the self-test's child process (cmd/seccompagent runs it
// as a hidden subcommand): it traps its own sysinfo(2) and
// sched_getaffinity(2) with a seccomp notify filter, hands the listener to
// the agent on socket the way runc does (one ContainerProcessState, the fd
// in SCM_RIGHTS), then makes both calls and checks that they returned.
//
// It makes itself non-dumpable first: writing into it (process_vm_writev's
// ptrace access check) then needs CAP_SYS_PTRACE (kernel/ptrace.c
// __ptrace_may_access, get_dumpable), as writing into a container that
// runs as another user does. An agent that could only reach its own
// children would pass a weaker test and fail every such container.
func SelfTestChild(socket, id string) error {
	// The filter covers the thread that installs it and its future
	// children; the call below must be made on this thread.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	filter, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return fmt.Errorf("seccomp filter: %w", err)
	}
	defer filter.Release()
	for _, name := range selfTestCalls {
		nr, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			return err
		}
		if err := filter.AddRule(nr, seccomp.ActNotify); err != nil {
			return fmt.Errorf("seccomp notify rule (libseccomp >= 2.5, Linux >= 5.0): %w", err)
		}
	}
	if err := filter.Load(); err != nil {
		return fmt.Errorf("load the seccomp filter: %w", err)
	}
	fd, err := filter.GetNotifFd()
	if err != nil {
		return fmt.Errorf("seccomp listener: %w", err)
	}
	state := specs.ContainerProcessState{
		Version:  specs.Version,
		Fds:      []string{specs.SeccompFdName},
		Pid:      os.Getpid(),
		Metadata: "seccompagent self-test",
		State:    specs.State{Version: specs.Version, ID: id, Status: specs.StateRunning, Pid: os.Getpid(), Bundle: "/"},
	}
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent socket %s: %w", socket, err)
	}
	_, _, err = conn.WriteMsgUnix(b, unix.UnixRights(int(fd)), nil)
	conn.Close()
	unix.Close(int(fd))
	if err != nil {
		return fmt.Errorf("send the listener: %w", err)
	}
	var buf [sysinfo.NativeSize]byte
	if _, _, errno := unix.Syscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&buf[0])), 0, 0); errno != 0 {
		return fmt.Errorf("sysinfo: %w", errno)
	}
	var mask [128]byte
	if _, _, errno := unix.Syscall(unix.SYS_SCHED_GETAFFINITY, 0, uintptr(len(mask)), uintptr(unsafe.Pointer(&mask[0]))); errno != 0 {
		return fmt.Errorf("sched_getaffinity: %w", errno)
	}
	return nil
}

package agent

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
)

// warnInterval is how often one kind of misconfiguration is logged at Warn;
// the occurrences in between are counted and reported with the next line.
const warnInterval = time.Minute

// observe returns the Loop.Observe of one container's loop: every outcome
// goes to the metrics (when on), and the fail-opens that mean the host is
// set up so that the agent cannot work reach the operator at Warn, rate
// limited, instead of only at Debug per notification.
func (s *Server) observe(log *logrus.Entry) func(notify.Outcome) {
	return func(o notify.Outcome) {
		s.cfg.Metrics.Call(o)
		if advice := misconfiguration(o); advice != "" {
			s.warn.warn(log, o, advice)
		}
	}
}

// misconfiguration says what to fix when a fail-open comes from the host's
// setup rather than from one caller's circumstances (a killed thread, a
// cgroup that vanished); "" otherwise.
func misconfiguration(o notify.Outcome) string {
	switch o.Reason {
	case notify.ReasonWrite:
		// process_vm_writev checks ptrace access to the caller
		// (PTRACE_MODE_ATTACH_REALCREDS, mm/process_vm_access.c):
		// Yama ptrace_scope=3, an LSM or a missing CAP_SYS_PTRACE refuse
		// it with EPERM for every container. EFAULT (a bad buffer) or
		// ESRCH (the thread exited) is the caller's own business.
		if errors.Is(o.Err, syscall.EPERM) || errors.Is(o.Err, syscall.EACCES) {
			return "the agent may not write into containers' memory (process_vm_writev refused: Yama ptrace_scope=3, an LSM such as AppArmor/SELinux, or no CAP_SYS_PTRACE): containers see the host's values"
		}
	case notify.ReasonPidNotVisible:
		return "the agent does not see the callers' threads (notification pid 0): run it in the host's pid namespace (Kubernetes: hostPID: true); containers see the host's values"
	}
	return ""
}

// warnLimiter logs each kind of misconfiguration at most once per
// interval, with the count of the ones it held back.
type warnLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func newWarnLimiter(interval time.Duration) *warnLimiter {
	return &warnLimiter{interval: interval, now: time.Now, last: map[string]time.Time{}, held: map[string]int{}}
}

// warn logs o's fail-open with advice, unless one of its kind was logged
// less than interval ago (then it only counts it). It reports whether it
// logged.
func (w *warnLimiter) warn(log *logrus.Entry, o notify.Outcome, advice string) bool {
	key := o.Reason
	if o.Err != nil {
		var errno syscall.Errno
		if errors.As(o.Err, &errno) {
			key += "/" + errno.Error()
		}
	}
	w.mu.Lock()
	now := w.now()
	if last, ok := w.last[key]; ok && now.Sub(last) < w.interval {
		w.held[key]++
		w.mu.Unlock()
		return false
	}
	w.last[key] = now
	suppressed := w.held[key]
	w.held[key] = 0
	w.mu.Unlock()

	fields := logrus.Fields{"reason": o.Reason, "syscall": o.Syscall, "suppressed": suppressed}
	if o.Err != nil {
		fields["err"] = o.Err.Error()
	}
	log.WithFields(fields).Warn("fail-open: " + advice)
	return true
}

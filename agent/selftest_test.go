package agent

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/seccompagent/seccompagent/notify"
)

func TestSelfTestCause(t *testing.T) {
	answered := func(name string) notify.Outcome { return notify.Outcome{Syscall: name, Response: notify.Return(0)} }
	refused := notify.Outcome{Syscall: "sched_getaffinity", Response: notify.Continue(), Reason: notify.ReasonWrite,
		Err: fmt.Errorf("process_vm_writev(7, 0x1000, 8): %w", syscall.EPERM)}
	for _, c := range []struct {
		name     string
		outcomes []notify.Outcome
		childErr error
		want     []string // substrings, in order; none: passed
	}{
		{"answered", []notify.Outcome{answered("sysinfo"), answered("sched_getaffinity")}, nil, nil},
		{"write refused, named first", []notify.Outcome{
			{Syscall: "sysinfo", Response: notify.Continue(), Reason: notify.ReasonHandler}, refused}, nil,
			[]string{"sched_getaffinity: fail-open, reason write", "operation not permitted", "CAP_SYS_PTRACE", "; sysinfo: fail-open, reason handler"}},
		{"handler's own choice with the write proven", []notify.Outcome{answered("sched_getaffinity"),
			{Syscall: "sysinfo", Response: notify.Continue(), Reason: notify.ReasonHandler}}, nil, nil},
		{"handler's choice only", []notify.Outcome{
			{Syscall: "sched_getaffinity", Response: notify.Continue(), Reason: notify.ReasonHandler},
			{Syscall: "sysinfo", Response: notify.Continue(), Reason: notify.ReasonHandler}}, nil,
			[]string{"sysinfo: fail-open, reason handler; sched_getaffinity: fail-open, reason handler"}},
		{"pid not visible", []notify.Outcome{answered("sched_getaffinity"),
			{Syscall: "sysinfo", Response: notify.Continue(), Reason: notify.ReasonPidNotVisible}}, nil,
			[]string{"sysinfo: fail-open, reason pid-not-visible", "hostPID"}},
		{"never arrived", nil, errors.New("exit status 1"),
			[]string{"sysinfo: the trapped call never reached the agent", "exit status 1"}},
		{"errno", []notify.Outcome{answered("sched_getaffinity"), {Syscall: "sysinfo", Response: notify.Fail(syscall.EFAULT)}}, nil,
			[]string{"bad address"}},
		{"child failed after the answers", []notify.Outcome{answered("sysinfo"), answered("sched_getaffinity")}, errors.New("exit status 1"),
			[]string{"child failed"}},
	} {
		m := map[string]notify.Outcome{}
		for _, o := range c.outcomes {
			m[o.Syscall] = o
		}
		got := selfTestCause(m, c.childErr, "")
		if (got == "") != (c.want == nil) {
			t.Errorf("%s: cause %q", c.name, got)
		}
		rest := got
		for _, w := range c.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: cause %q lacks %q (in order)", c.name, got, w)
				break
			}
			rest = rest[i+len(w):]
		}
	}
}

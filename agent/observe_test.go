package agent

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestMisconfiguration(t *testing.T) {
	// What notify reports for a write that failed: the message handlers
	// got, with process_vm_writev's errno reachable through errors.Is.
	memErr := func(errno syscall.Errno) error {
		return fmt.Errorf("process_vm_writev(42, 0x1000, 112): %w", errno)
	}
	for _, c := range []struct {
		name string
		o    notify.Outcome
		want bool
	}{
		{"write EPERM (Yama 3, LSM, no CAP_SYS_PTRACE)", notify.Outcome{Reason: notify.ReasonWrite, Err: memErr(syscall.EPERM)}, true},
		{"write EACCES", notify.Outcome{Reason: notify.ReasonWrite, Err: memErr(syscall.EACCES)}, true},
		{"write EFAULT (caller's bad buffer)", notify.Outcome{Reason: notify.ReasonWrite, Err: memErr(syscall.EFAULT)}, false},
		{"write ESRCH (thread gone)", notify.Outcome{Reason: notify.ReasonWrite, Err: memErr(syscall.ESRCH)}, false},
		{"pid not visible", notify.Outcome{Reason: notify.ReasonPidNotVisible}, true},
		{"notification gone", notify.Outcome{Reason: notify.ReasonGone, Err: syscall.ENOENT}, false},
		{"handler", notify.Outcome{Reason: notify.ReasonHandler}, false},
		{"answered", notify.Outcome{Response: notify.Return(0)}, false},
	} {
		if got := misconfiguration(c.o) != ""; got != c.want {
			t.Errorf("%s: misconfiguration = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWarnLimiter(t *testing.T) {
	logger, hook := test.NewNullLogger()
	log := logrus.NewEntry(logger)
	w := newWarnLimiter(time.Minute)
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	eacces := notify.Outcome{Syscall: "sysinfo", Reason: notify.ReasonWrite, Err: fmt.Errorf("process_vm_writev(1, 0x1000, 112): %w", syscall.EPERM)}
	hidden := notify.Outcome{Syscall: "sysinfo", Reason: notify.ReasonPidNotVisible}

	logged := func(o notify.Outcome) bool { return w.warn(log, o, "advice") }
	if !logged(eacces) {
		t.Fatal("first EACCES not logged")
	}
	for i := 0; i < 5; i++ {
		now = now.Add(time.Second)
		if logged(eacces) {
			t.Fatalf("EACCES logged again after %v", time.Duration(i+1)*time.Second)
		}
	}
	if !logged(hidden) {
		t.Error("another kind of misconfiguration was held back by the first")
	}
	now = now.Add(time.Minute)
	if !logged(eacces) {
		t.Fatal("EACCES not logged again after the interval")
	}
	entries := hook.AllEntries()
	if len(entries) != 3 {
		t.Fatalf("%d log lines, want 3", len(entries))
	}
	last := entries[2]
	if last.Level != logrus.WarnLevel || last.Data["suppressed"] != 5 || last.Data["reason"] != notify.ReasonWrite ||
		fmt.Sprint(last.Data["err"]) != "process_vm_writev(1, 0x1000, 112): operation not permitted" {
		t.Errorf("last line: %s %v %q", last.Level, last.Data, last.Message)
	}
}

package sysinfo

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func kernelBoottime(t *testing.T) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// TestBootClock: what bootClock says lies between the kernel's
// CLOCK_BOOTTIME read just before and just after (give or take the
// resample's own half window), call after call; and an offset whose
// wall-clock distance no longer holds (a resume from suspend moves it) is
// not used: the clock reads the kernel's again.
func TestBootClock(t *testing.T) {
	const slack = 200 * time.Microsecond
	var c bootClock
	check := func(what string) {
		t.Helper()
		before := kernelBoottime(t)
		got, err := c.now()
		if err != nil {
			t.Fatal(err)
		}
		after := kernelBoottime(t)
		if got < before-slack || got > after+slack {
			t.Fatalf("%s: bootClock %v, kernel %v before and %v after", what, got, before, after)
		}
	}
	for range 2000 {
		check("steady")
	}
	// A suspend of an hour: the kernel's offset grew by an hour, and
	// the wall clock moved an hour away from the monotonic one. An
	// offset from before it, stale by an hour, must not be used.
	o := c.off.Load()
	c.off.Store(&bootOffset{boot: o.boot - time.Hour, wall: o.wall - time.Hour, at: o.at})
	check("after a resume")
	// Within tolerance and age, the cached offset is what answers.
	o = c.off.Load()
	c.off.Store(&bootOffset{boot: o.boot + time.Hour, wall: o.wall, at: o.at})
	if got, _ := c.now(); got < kernelBoottime(t)+time.Hour-time.Second {
		t.Fatalf("a fresh offset was not used (got %v): the clock called the kernel every time", got)
	}
}

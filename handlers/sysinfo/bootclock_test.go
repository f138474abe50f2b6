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
	// A reading whose two monotonic readings were too far apart is not
	// kept: read until one is.
	fresh := func() *bootOffset {
		t.Helper()
		c.off.Store(nil)
		for i := 0; c.off.Load() == nil; i++ {
			if i == 1000 {
				t.Fatal("no offset kept in 1000 readings: every one took over bootOffsetWindow")
			}
			if _, err := c.now(); err != nil {
				t.Fatal(err)
			}
		}
		return c.off.Load()
	}
	// A suspend of an hour: the kernel's offset grew by an hour, and
	// the wall clock moved an hour away from the monotonic one. An
	// offset from before it, stale by an hour, must not be used.
	o := fresh()
	c.off.Store(&bootOffset{boot: o.boot - time.Hour, wall: o.wall - time.Hour, at: o.at})
	check("after a resume")
	// Within tolerance and age, the cached offset is what answers.
	o = fresh()
	c.off.Store(&bootOffset{boot: o.boot + time.Hour, wall: o.wall, at: o.at})
	if got, _ := c.now(); got < kernelBoottime(t)+time.Hour-time.Second {
		t.Fatalf("a fresh offset was not used (got %v): the clock called the kernel every time", got)
	}
}

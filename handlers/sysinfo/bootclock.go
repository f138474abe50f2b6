package sysinfo

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME, mostly without a system call.
//
// CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time the system spent
// suspended (the kernel's offs_boot, which changes only at a resume). Go
// reads the monotonic and the wall clock through the vDSO (time.Now), but
// clock_gettime(CLOCK_BOOTTIME) from Go is a system call: on an emulated or
// mitigated machine the costliest part of a sysinfo answer after the
// counters. So the offset between the two is read once and reused while
// the wall clock keeps its distance to the monotonic clock: the wall clock
// runs on through a suspend and the monotonic clock does not, so a resume
// moves that distance by the time suspended, and the offset is read again.
// So does a step of the wall clock (needlessly, harmlessly; slewing moves
// both clocks alike), and, at most a second apart, anything else.
//
// The offset is the kernel's reading less the midpoint of two monotonic
// readings around it, kept only when they are at most bootOffsetWindow
// apart (a thread descheduled in between would skew every answer of the
// next second): answers are then within half of that of the kernel's own,
// well inside the time any trapped call takes.
type bootClock struct {
	off atomic.Pointer[bootOffset]
}

type bootOffset struct {
	boot time.Duration // CLOCK_BOOTTIME - monotonic
	wall time.Duration // wall - monotonic
	at   time.Duration // monotonic, when read
}

// monoBase anchors monotonic readings (t.Sub(monoBase) uses only the
// monotonic clock).
var monoBase = time.Now()

const (
	bootOffsetTolerance = time.Millisecond
	bootOffsetMaxAge    = time.Second
	bootOffsetWindow    = 20 * time.Microsecond
)

func (c *bootClock) now() (time.Duration, error) {
	t := time.Now()
	mono := t.Sub(monoBase)
	wall := time.Duration(t.UnixNano()) - mono
	if o := c.off.Load(); o != nil && mono-o.at < bootOffsetMaxAge && absDuration(wall-o.wall) < bootOffsetTolerance {
		return mono + o.boot, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	boot := time.Duration(ts.Nano())
	if after := time.Since(monoBase); after-mono <= bootOffsetWindow {
		c.off.Store(&bootOffset{boot: boot - (mono+after)/2, wall: wall, at: mono})
	}
	return boot, nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

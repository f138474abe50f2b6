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
// So does a step of the wall clock (needlessly, harmlessly), and, at most
// a second apart, anything else; slewing moves it by at most 0.5 ms a
// second, within the tolerance.
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
)

func (c *bootClock) now() (time.Duration, error) {
	t := time.Now()
	mono := t.Sub(monoBase)
	wall := time.Duration(t.UnixNano()) - mono
	if o := c.off.Load(); o != nil && mono-o.at < bootOffsetMaxAge && absDuration(wall-o.wall) < bootOffsetTolerance {
		return mono + o.boot, nil
	}
	// The kernel's clock between two monotonic readings: its offset is
	// taken from their midpoint, off by at most half the syscall.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	t2 := time.Now()
	mid := (mono + t2.Sub(monoBase)) / 2
	boot := time.Duration(ts.Nano())
	c.off.Store(&bootOffset{boot: boot - mid, wall: wall, at: mono})
	return boot, nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

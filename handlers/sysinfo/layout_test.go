package sysinfo

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestNativeLayoutMatchesKernelStruct(t *testing.T) {
	var si unix.Sysinfo_t
	if got := int(unsafe.Sizeof(si)); got != NativeSize {
		t.Fatalf("sizeof(struct sysinfo) = %d, NativeSize = %d", got, NativeSize)
	}
	in := Info{Uptime: 42, Loads: [3]uint64{1, 2, 3}, TotalRAM: 10, FreeRAM: 9, SharedRAM: 8, BufferRAM: 7, TotalSwap: 6, FreeSwap: 5, Procs: 4}
	b := EncodeNative(nil, in)
	copy((*[NativeSize]byte)(unsafe.Pointer(&si))[:], b)
	if si.Uptime != 42 || si.Loads != [3]uint64{1, 2, 3} || si.Totalram != 10 || si.Freeram != 9 || si.Sharedram != 8 ||
		si.Bufferram != 7 || si.Totalswap != 6 || si.Freeswap != 5 || si.Procs != 4 || si.Unit != 1 || si.Totalhigh != 0 {
		t.Fatalf("encoded struct decodes as %+v", si)
	}
}

func TestCompatScaling(t *testing.T) {
	le := binary.LittleEndian
	// Below 4 GiB: bytes, mem_unit 1.
	b := EncodeCompat(nil, Info{TotalRAM: 256 << 20, FreeRAM: 100 << 20}, 4096)
	if len(b) != CompatSize || le.Uint32(b[16:]) != 256<<20 || le.Uint32(b[52:]) != 1 {
		t.Fatalf("256 MiB: totalram %d unit %d", le.Uint32(b[16:]), le.Uint32(b[52:]))
	}
	// 8 GiB RAM: shifted to pages, like COMPAT_SYSCALL_DEFINE1(sysinfo).
	b = EncodeCompat(nil, Info{TotalRAM: 8 << 30, FreeRAM: 6 << 30, TotalSwap: 1 << 30, FreeSwap: 1 << 20}, 4096)
	if le.Uint32(b[16:]) != (8<<30)>>12 || le.Uint32(b[20:]) != (6<<30)>>12 || le.Uint32(b[32:]) != (1<<30)>>12 ||
		le.Uint32(b[36:]) != 256 || le.Uint32(b[52:]) != 4096 {
		t.Fatalf("8 GiB: % x", b)
	}
	// Swap alone above 4 GiB also switches units.
	b = EncodeCompat(nil, Info{TotalRAM: 1 << 30, TotalSwap: 5 << 30}, 4096)
	if le.Uint32(b[52:]) != 4096 || le.Uint32(b[16:]) != (1<<30)>>12 {
		t.Fatalf("big swap: % x", b)
	}
}

func TestUptimeRoundsUp(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int64
	}{{0, 0}, {time.Second, 1}, {time.Second + time.Nanosecond, 2}, {1500 * time.Millisecond, 2}, {-time.Second, 0}} {
		if got := uptimeSeconds(c.d); got != c.want {
			t.Errorf("uptimeSeconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

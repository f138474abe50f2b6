package sysinfo

import "encoding/binary"

// Info is the kernel's struct sysinfo with mem_unit = 1 (do_sysinfo on a
// 64-bit kernel always normalises to bytes).
type Info struct {
	Uptime    int64 // seconds, rounded up like kernel/sys.c do_sysinfo
	Loads     [3]uint64
	TotalRAM  uint64
	FreeRAM   uint64
	SharedRAM uint64
	BufferRAM uint64
	TotalSwap uint64
	FreeSwap  uint64
	Procs     uint16
}

// NativeSize is sizeof(struct sysinfo) on x86_64 and x32 (x32's sysinfo is
// the common 64-bit entry point).
const NativeSize = 112

// CompatSize is sizeof(struct compat_sysinfo) (i386).
const CompatSize = 64

// EncodeNative lays out struct sysinfo (include/uapi/linux/sysinfo.h) for a
// 64-bit caller in b (NativeSize zeroed bytes; nil: new ones): longs are 8
// bytes, procs is followed by padding, the _f tail is empty, and the kernel
// zeroes everything it does not set.
func EncodeNative(b []byte, in Info) []byte {
	if len(b) != NativeSize {
		b = make([]byte, NativeSize)
	}
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(in.Uptime))
	for i, l := range in.Loads {
		le.PutUint64(b[8+8*i:], l)
	}
	le.PutUint64(b[32:], in.TotalRAM)
	le.PutUint64(b[40:], in.FreeRAM)
	le.PutUint64(b[48:], in.SharedRAM)
	le.PutUint64(b[56:], in.BufferRAM)
	le.PutUint64(b[64:], in.TotalSwap)
	le.PutUint64(b[72:], in.FreeSwap)
	le.PutUint16(b[80:], in.Procs)
	// 88 totalhigh, 96 freehigh: 0 on x86_64.
	le.PutUint32(b[104:], 1) // mem_unit
	return b
}

// EncodeCompat lays out struct compat_sysinfo for an i386 caller in b
// (CompatSize zeroed bytes; nil: new ones) the way kernel/sys.c
// COMPAT_SYSCALL_DEFINE1(sysinfo) does: if total RAM or total swap does not
// fit in 32 bits, every memory field is shifted down until mem_unit reaches
// the page size; then each field is truncated to 32 bits.
func EncodeCompat(b []byte, in Info, pageSize uint64) []byte {
	unit := uint64(1)
	shift := uint(0)
	if in.TotalRAM>>32 != 0 || in.TotalSwap>>32 != 0 {
		for unit < pageSize {
			unit <<= 1
			shift++
		}
	}
	if len(b) != CompatSize {
		b = make([]byte, CompatSize)
	}
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(in.Uptime))
	for i, l := range in.Loads {
		le.PutUint32(b[4+4*i:], uint32(l))
	}
	le.PutUint32(b[16:], uint32(in.TotalRAM>>shift))
	le.PutUint32(b[20:], uint32(in.FreeRAM>>shift))
	le.PutUint32(b[24:], uint32(in.SharedRAM>>shift))
	le.PutUint32(b[28:], uint32(in.BufferRAM>>shift))
	le.PutUint32(b[32:], uint32(in.TotalSwap>>shift))
	le.PutUint32(b[36:], uint32(in.FreeSwap>>shift))
	le.PutUint16(b[40:], in.Procs)
	// 44 totalhigh, 48 freehigh: 0.
	le.PutUint32(b[52:], uint32(unit))
	return b
}

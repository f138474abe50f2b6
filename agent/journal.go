package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/seccompagent/seccompagent/notify"
	"golang.org/x/sys/unix"
)

// The journal is a memfd shared by the agent and the holder: one slot per
// listener, in which the agent notes every notification it has received
// before answering it. An agent that dies with a notification in hand
// leaves it "sent" in the kernel, and its caller waits until a holder of
// the listener answers it by id; the next agent reads the slot, checks the
// id with SECCOMP_IOCTL_NOTIF_ID_VALID and answers it properly.
//
// A slot is a seqlock of little-endian 64-bit words, written only by the
// loop that owns it:
//
//	0 seq   odd while the slot is being written
//	1 key   the listener the slot belongs to (0: free)
//	2 id
//	3 tid | arch<<32
//	4 nr (int32)
//	5..10 args[0..5]
//
// The memory stays mapped by whoever holds the memfd, so a record written
// by a process that is SIGKILLed an instant later survives it.
const (
	journalMagic   = 0x314c4e524a414353 // "SCAJRNL1"
	journalHeader  = 64
	slotWords      = 16
	slotSize       = slotWords * 8
	journalSlots   = 1 << 16
	journalSize    = journalHeader + journalSlots*slotSize
	journalVersion = 1
)

// journal is the agent's mapping of the memfd.
type journal struct {
	fd   int
	mem  []byte
	mu   sync.Mutex
	free []int // free slot indexes
	used map[int]bool
}

func newJournal() (*journal, error) {
	fd, err := unix.MemfdCreate("seccompagent-journal", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create journal memfd: %w", err)
	}
	if err := unix.Ftruncate(fd, journalSize); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size journal memfd: %w", err)
	}
	j, err := mapJournal(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	binary.LittleEndian.PutUint64(j.mem[8:], journalVersion)
	binary.LittleEndian.PutUint64(j.mem[16:], journalSlots)
	atomic.StoreUint64(j.word(0), journalMagic)
	return j, nil
}

// openJournal maps a journal handed over by the holder.
func openJournal(fd int) (*journal, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat journal: %w", err)
	}
	if st.Size != journalSize {
		return nil, fmt.Errorf("journal has %d bytes, want %d (written by an incompatible agent)", st.Size, journalSize)
	}
	j, err := mapJournal(fd)
	if err != nil {
		return nil, err
	}
	if atomic.LoadUint64(j.word(0)) != journalMagic || binary.LittleEndian.Uint64(j.mem[8:]) != journalVersion {
		unix.Munmap(j.mem)
		return nil, errors.New("journal has an unknown format version")
	}
	return j, nil
}

func mapJournal(fd int) (*journal, error) {
	mem, err := unix.Mmap(fd, 0, journalSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map journal: %w", err)
	}
	j := &journal{fd: fd, mem: mem, used: map[int]bool{}}
	return j, nil
}

func (j *journal) word(i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&j.mem[i*8]))
}

func (j *journal) slotWord(slot, w int) *uint64 {
	return j.word((journalHeader + slot*slotSize + w*8) / 8)
}

// claim marks slot as used by listener key (a slot named in a listener
// handed over by the holder).
func (j *journal) claim(slot int, key uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if slot < 0 || slot >= journalSlots || j.used[slot] {
		return false
	}
	j.used[slot] = true
	atomic.StoreUint64(j.slotWord(slot, 1), key)
	return true
}

// alloc returns a free slot for listener key, or -1 when all are taken
// (that listener then runs without a journal: a crash mid-notification
// leaves its caller to the next agent's id probe).
func (j *journal) alloc(key uint64) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.free) == 0 {
		// Rebuild the free list lazily, lowest first.
		for i := journalSlots - 1; i >= 0 && len(j.free) < 1024; i-- {
			if !j.used[i] {
				j.free = append(j.free, i)
			}
		}
	}
	for len(j.free) > 0 {
		s := j.free[len(j.free)-1]
		j.free = j.free[:len(j.free)-1]
		if !j.used[s] {
			j.used[s] = true
			j.reset(s, key)
			return s
		}
	}
	return -1
}

func (j *journal) reset(slot int, key uint64) {
	atomic.AddUint64(j.slotWord(slot, 0), 1)
	for w := 2; w < slotWords; w++ {
		atomic.StoreUint64(j.slotWord(slot, w), 0)
	}
	atomic.StoreUint64(j.slotWord(slot, 1), key)
	atomic.AddUint64(j.slotWord(slot, 0), 1)
}

func (j *journal) release(slot int) {
	if slot < 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.used[slot] {
		j.reset(slot, 0)
		delete(j.used, slot)
		j.free = append(j.free, slot)
	}
}

// record is the seqlock write of one received notification.
func (j *journal) record(slot int, p *notify.Pending) {
	atomic.AddUint64(j.slotWord(slot, 0), 1)
	atomic.StoreUint64(j.slotWord(slot, 2), p.ID)
	atomic.StoreUint64(j.slotWord(slot, 3), uint64(p.Tid)|uint64(p.Arch)<<32)
	atomic.StoreUint64(j.slotWord(slot, 4), uint64(uint32(p.Nr)))
	for i, a := range p.Args {
		atomic.StoreUint64(j.slotWord(slot, 5+i), a)
	}
	atomic.AddUint64(j.slotWord(slot, 0), 1)
}

// last returns the last notification recorded in slot for listener key;
// ok is false when the slot holds nothing consistent for it (never used,
// another listener's, or torn by a death in the middle of record).
func (j *journal) last(slot int, key uint64) (p notify.Pending, ok bool) {
	if slot < 0 || slot >= journalSlots {
		return p, false
	}
	seq := atomic.LoadUint64(j.slotWord(slot, 0))
	if seq&1 != 0 || atomic.LoadUint64(j.slotWord(slot, 1)) != key {
		return p, false
	}
	p.ID = atomic.LoadUint64(j.slotWord(slot, 2))
	ta := atomic.LoadUint64(j.slotWord(slot, 3))
	p.Tid, p.Arch = uint32(ta), uint32(ta>>32)
	p.Nr = int32(uint32(atomic.LoadUint64(j.slotWord(slot, 4))))
	for i := range p.Args {
		p.Args[i] = atomic.LoadUint64(j.slotWord(slot, 5+i))
	}
	return p, p.ID != 0 && atomic.LoadUint64(j.slotWord(slot, 0)) == seq
}

// slotJournal is the notify.Journal of one listener.
type slotJournal struct {
	j    *journal
	slot int
}

func (s slotJournal) Received(p *notify.Pending) { s.j.record(s.slot, p) }

var _ notify.Journal = slotJournal{}

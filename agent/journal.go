package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/seccompagent/seccompagent/notify"
	"golang.org/x/sys/unix"
)

// The journal is a memfd shared by the agent and the holder, with one slot
// per listener. A listener's loop receives its notifications straight into
// its slot (notify.Journal.RecvBuffer): the kernel writes struct
// seccomp_notif there before RECV returns, so even an agent SIGKILLed at
// that very instant leaves a complete record. The kernel keeps such a
// notification "sent" and its caller waits until a holder of the listener
// answers it by id; the next agent reads the slot, checks the id with
// SECCOMP_IOCTL_NOTIF_ID_VALID and answers it properly.
//
// A slot is 128 bytes: struct seccomp_notif (80 bytes; zeroed before each
// RECV, as the kernel requires) and, in the last 8 bytes, the key of the
// listener that owns it (0: free).
const (
	journalMagic   = 0x314c4e524a414353 // "SCAJRNL1"
	journalHeader  = 64
	slotSize       = 128
	slotKeyOffset  = slotSize - 8
	journalSlots   = 1 << 16
	journalSize    = journalHeader + journalSlots*slotSize
	journalVersion = 2
)

// journal is the agent's mapping of the memfd.
type journal struct {
	fd   int
	mem  []byte
	mu   sync.Mutex
	free []int // free slot indexes
	used map[int]bool
	// tagged are the slots a previous agent left with a listener's key,
	// by key, until that listener is adopted (claim, orphanSlots) or
	// known gone (dropTagged): its loop's main slot and the slots of its
	// helper receivers (notify.HelperJournal).
	tagged map[uint64][]int
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
	// Keep every slot a previous agent used out of alloc's reach until
	// its listener has been adopted and its notification answered.
	for i := 0; i < journalSlots; i++ {
		if k := atomic.LoadUint64(j.keyWord(i)); k != 0 {
			j.used[i] = true
			j.tagged[k] = append(j.tagged[k], i)
		}
	}
	return j, nil
}

func mapJournal(fd int) (*journal, error) {
	mem, err := unix.Mmap(fd, 0, journalSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map journal: %w", err)
	}
	j := &journal{fd: fd, mem: mem, used: map[int]bool{}, tagged: map[uint64][]int{}}
	return j, nil
}

func (j *journal) word(i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&j.mem[i*8]))
}

func (j *journal) slot(i int) []byte {
	off := journalHeader + i*slotSize
	return j.mem[off : off+slotSize : off+slotSize]
}

func (j *journal) keyWord(i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&j.slot(i)[slotKeyOffset]))
}

// claim marks slot as used by listener key (a slot named in a listener
// handed over by the holder).
func (j *journal) claim(slot int, key uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if slot < 0 || slot >= journalSlots {
		return false
	}
	if i := slices.Index(j.tagged[key], slot); i >= 0 {
		j.tagged[key] = slices.Delete(j.tagged[key], i, i+1)
		return true // left by the previous agent for this very listener
	}
	if j.used[slot] {
		return false
	}
	j.used[slot] = true
	atomic.StoreUint64(j.keyWord(slot), key)
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
	clear(j.slot(slot)[:slotKeyOffset])
	atomic.StoreUint64(j.keyWord(slot), key)
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

// last returns the notification last received into slot by listener key;
// ok is false when the slot is another listener's or holds none.
func (j *journal) last(slot int, key uint64) (notify.Pending, bool) {
	if slot < 0 || slot >= journalSlots || atomic.LoadUint64(j.keyWord(slot)) != key {
		return notify.Pending{}, false
	}
	return notify.DecodePending(j.slot(slot))
}

// orphanSlots hands over the other slots a previous agent left for listener
// key (its helper receivers'); the caller answers what they hold and
// releases them.
func (j *journal) orphanSlots(key uint64) []int {
	j.mu.Lock()
	defer j.mu.Unlock()
	slots := j.tagged[key]
	delete(j.tagged, key)
	return slots
}

// dropTagged frees the slots of listeners that were not handed over (their
// containers are gone, and with them every caller those slots could hold).
func (j *journal) dropTagged() {
	j.mu.Lock()
	var slots []int
	for _, s := range j.tagged {
		slots = append(slots, s...)
	}
	clear(j.tagged)
	j.mu.Unlock()
	for _, s := range slots {
		j.release(s)
	}
}

// slotJournal is the notify.Journal of one listener: its main slot, and a
// slot of its own for each helper receiver, tagged with the listener's key
// so that the next agent finds them.
type slotJournal struct {
	j    *journal
	slot int
	key  uint64
}

func (s slotJournal) RecvBuffer() []byte { return s.j.slot(s.slot)[:slotKeyOffset] }

func (s slotJournal) Received(*notify.Pending) {}

func (s slotJournal) HelperBuffer() ([]byte, func(), bool) {
	slot := s.j.alloc(s.key)
	if slot < 0 {
		return nil, nil, false
	}
	return s.j.slot(slot)[:slotKeyOffset], func() { s.j.release(slot) }, true
}

var _ notify.HelperJournal = slotJournal{}

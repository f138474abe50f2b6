package agent

import (
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJournalHelperSlots: a loop's helper receivers get slots of their own,
// tagged with the listener's key; after a crash the next agent (a new
// mapping of the same memfd) keeps every tagged slot out of alloc's reach,
// hands the helper slots of an adopted listener to its recovery and frees
// those of listeners nobody adopted.
func TestJournalHelperSlots(t *testing.T) {
	j, err := newJournal()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(j.mem)
	defer unix.Close(j.fd)
	const key, gone = 7, 9
	main := j.alloc(key)
	sj := slotJournal{j: j, slot: main, key: key}
	buf, _, ok := sj.HelperBuffer()
	if !ok {
		t.Fatal("no helper buffer")
	}
	binary.LittleEndian.PutUint64(buf, 42) // struct seccomp_notif.id, as RECV writes it
	_, releaseGone, _ := slotJournal{j: j, slot: j.alloc(gone), key: gone}.HelperBuffer()
	_ = releaseGone // this agent "dies" holding it

	// The next agent maps the same memfd.
	fd, err := unix.Dup(j.fd)
	if err != nil {
		t.Fatal(err)
	}
	k, err := openJournal(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(k.mem)
	defer unix.Close(fd)
	taken := map[int]bool{}
	for i := 0; i < 4; i++ {
		taken[k.alloc(1000+uint64(i))] = true
	}
	for s := range k.used {
		if taken[s] && slices.Contains(k.tagged[key], s) {
			t.Fatalf("alloc handed out slot %d, tagged for listener %d", s, key)
		}
	}
	if !k.claim(main, key) {
		t.Fatal("the adopted listener could not claim its main slot")
	}
	helpers := k.orphanSlots(key)
	if len(helpers) != 1 {
		t.Fatalf("helper slots for the adopted listener: %v, want one", helpers)
	}
	if p, ok := k.last(helpers[0], key); !ok || p.ID != 42 {
		t.Fatalf("helper slot holds %+v (ok %v), want id 42", p, ok)
	}
	if taken[helpers[0]] || taken[main] {
		t.Fatal("a tagged slot was handed to another listener before recovery")
	}
	k.release(helpers[0])
	k.dropTagged()
	if len(k.tagged) != 0 {
		t.Fatalf("tagged slots left after dropTagged: %v", k.tagged)
	}
}

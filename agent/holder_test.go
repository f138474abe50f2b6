package agent

import (
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// fakeAgent is one side of the hand-over protocol, driven by the test.
type fakeAgent struct {
	t  *testing.T
	fd int
}

func helloAgent(t *testing.T, sock string) (*fakeAgent, []entry, string) {
	t.Helper()
	var fd int
	var err error
	for i := 0; i < 200; i++ {
		if fd, err = dialHolder(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial holder: %v", err)
	}
	if err := sendFrame(fd, frame{Op: "hello", Role: "agent", Version: handoffVersion}, -1); err != nil {
		t.Fatal(err)
	}
	var got []entry
	for {
		f, efd, err := recvFrame(fd)
		if err != nil {
			t.Fatalf("receive from holder: %v", err)
		}
		switch f.Op {
		case "entry":
			got = append(got, entry{kind: f.Kind, key: f.Key, meta: f.Meta, fd: efd})
		case "ready":
			return &fakeAgent{t: t, fd: fd}, got, f.Previous
		}
	}
}

func (a *fakeAgent) put(kind string, key uint64, meta string, fd int) {
	a.t.Helper()
	if err := sendFrame(a.fd, frame{Op: "put", Kind: kind, Key: key, Meta: json.RawMessage(meta)}, fd); err != nil {
		a.t.Fatal(err)
	}
}

func sameFile(t *testing.T, a, b int) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

func runHolder(t *testing.T, sock string, idle time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() { done <- RunHolder(HolderConfig{Socket: sock, IdleExit: idle, Log: quietLog()}) }()
	return done
}

// TestHolderKeepsFdsAcrossAgents walks the protocol: an agent stores a
// listener and dies; the next one gets the same open file back; the holder
// closes it once the listener hangs up; an agent that starts while one
// serves makes the holder ask the serving one to hand over.
func TestHolderKeepsFdsAcrossAgents(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "holder.sock")
	done := runHolder(t, sock, 0)

	// A socketpair stands in for a seccomp listener: the holder only
	// keeps it and watches it for POLLHUP.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, got, prev := helloAgent(t, sock)
	if len(got) != 0 || prev != "none" {
		t.Fatalf("first agent got %d entries, previous %q; want 0, none", len(got), prev)
	}
	a.put(kindListener, 42, `{"slot":3}`, pair[0])
	unix.Close(a.fd) // the agent dies

	b, got, prev := helloAgent(t, sock)
	if prev != "lost" {
		t.Errorf("previous = %q, want lost (the agent did not say bye)", prev)
	}
	if len(got) != 1 || got[0].key != 42 || got[0].kind != kindListener || string(got[0].meta) != `{"slot":3}` {
		t.Fatalf("second agent got %+v, want the listener with key 42", got)
	}
	if !sameFile(t, got[0].fd, pair[0]) {
		t.Fatal("the held fd is not the listener that was put")
	}
	unix.Close(got[0].fd)

	// A third agent: the holder asks b to hand over, and answers c only
	// once b's connection has ended.
	type hello struct {
		a    *fakeAgent
		got  []entry
		prev string
	}
	cDone := make(chan hello, 1)
	go func() {
		c, got, prev := helloAgent(t, sock)
		cDone <- hello{c, got, prev}
	}()
	f, _, err := recvFrame(b.fd)
	if err != nil || f.Op != "handover" {
		t.Fatalf("serving agent got %+v, %v; want handover", f, err)
	}
	select {
	case <-cDone:
		t.Fatal("the new agent was answered before the serving one handed over")
	case <-time.After(100 * time.Millisecond):
	}
	if err := sendFrame(b.fd, frame{Op: "bye"}, -1); err != nil {
		t.Fatal(err)
	}
	unix.Close(b.fd)
	c := <-cDone
	if c.prev != "exited" || len(c.got) != 1 {
		t.Fatalf("after hand-over: previous %q, %d entries; want exited, 1", c.prev, len(c.got))
	}
	unix.Close(c.got[0].fd)

	// The listener's container ends: the holder closes and forgets it.
	unix.Close(pair[0])
	unix.Close(pair[1])
	time.Sleep(1500 * time.Millisecond) // the holder polls at least once a second
	unix.Close(c.a.fd)
	d, got, _ := helloAgent(t, sock)
	if len(got) != 0 {
		t.Fatalf("a hung-up listener is still held: %+v", got)
	}
	unix.Close(d.fd)

	// A newer holder takes everything over; the old one exits.
	done2 := runHolder(t, sock, 200*time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("old holder: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old holder did not exit when a new one took over")
	}
	// Nothing to hold and no agent: the new holder goes away by itself.
	select {
	case err := <-done2:
		if err != nil {
			t.Fatalf("new holder: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an idle holder did not exit")
	}
}

// TestHolderKeepsPutsOfAKilledAgent: an agent hands the holder many
// listeners in a burst and is killed at once, and the next agent says hello
// right away, while the holder may not have read the dead agent's last
// frames yet: the next agent must still get every listener.
func TestHolderKeepsPutsOfAKilledAgent(t *testing.T) {
	const n = 300
	sock := filepath.Join(t.TempDir(), "holder.sock")
	runHolder(t, sock, 0)
	a, _, _ := helloAgent(t, sock)
	var mine []int
	for i := 0; i < n; i++ {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, pair[0], pair[1])
		a.put(kindListener, uint64(i+1), `{}`, pair[0])
	}
	unix.Close(a.fd) // killed: its last puts may still be queued
	b, got, _ := helloAgent(t, sock)
	if len(got) != n {
		t.Errorf("the next agent got %d listeners, want all %d the killed one put", len(got), n)
	}
	for _, e := range got {
		unix.Close(e.fd)
	}
	unix.Close(b.fd)
	for _, fd := range mine {
		unix.Close(fd)
	}
}

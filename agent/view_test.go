package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/test/testenv"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func TestRecommendedThreads(t *testing.T) {
	quota := func(n uint64) limits.CPU { return limits.CPU{Count: limits.Value{Value: n, Limited: true}} }
	cases := []struct {
		name string
		mask []byte
		cpu  limits.CPU
		p    affinity.Policy
		want int
	}{
		{"no quota: the mask", []byte{0x0f, 0}, limits.CPU{}, affinity.Policy{}, 4},
		{"quota below the mask", []byte{0x0f, 0}, quota(1), affinity.Policy{}, 1},
		{"quota above the mask (cpuset)", []byte{0x03, 0}, quota(8), affinity.Policy{}, 2},
		{"quota over sparse mask", []byte{0x81, 0x01}, quota(2), affinity.Policy{}, 2},
		{"off", []byte{0x0f, 0}, quota(1), affinity.Policy{Off: true}, 4},
		{"fixed count", []byte{0xff, 0}, quota(1), affinity.Policy{Count: 3}, 3},
		{"fixed count above the mask", []byte{0x01, 0}, limits.CPU{}, affinity.Policy{Count: 3}, 1},
	}
	for _, tc := range cases {
		mask := append([]byte(nil), tc.mask...)
		if got := RecommendedThreads(mask, tc.cpu, tc.p); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
		if string(mask) != string(tc.mask) {
			t.Errorf("%s: mask modified", tc.name)
		}
	}
}

func TestPeerTable(t *testing.T) {
	cfg := ViewConfig{MaxPerPeer: 2, Rate: 10, Burst: 3, MaxPeers: 2}
	tb := peerTable{m: map[string]*peer{}}
	t0 := time.Unix(1000, 0)
	// Two at a time per peer.
	if !tb.take("a", t0, cfg) || !tb.take("a", t0, cfg) {
		t.Fatal("first two refused")
	}
	if tb.take("a", t0, cfg) {
		t.Error("third concurrent answer allowed")
	}
	tb.done("a")
	tb.done("a")
	// The bucket (burst 3) has one token left, then is empty.
	if !tb.take("a", t0, cfg) {
		t.Error("third token refused")
	}
	tb.done("a")
	if tb.take("a", t0, cfg) {
		t.Error("empty bucket allowed")
	}
	// 100 ms refill one token at 10/s.
	if !tb.take("a", t0.Add(100*time.Millisecond), cfg) {
		t.Error("refilled token refused")
	}
	tb.done("a")
	// Another peer has its own budget.
	if !tb.take("b", t0, cfg) {
		t.Error("peer b refused")
	}
	// The table is full (2 peers) and both are recent: c waits...
	if tb.take("c", t0.Add(100*time.Millisecond), cfg) {
		t.Error("table grew beyond MaxPeers")
	}
	tb.done("b")
	// ...until a peer is idle with a full bucket and can be forgotten.
	if !tb.take("c", t0.Add(10*time.Second), cfg) {
		t.Error("c refused after the others went idle")
	}
	if len(tb.m) > 2 {
		t.Errorf("%d peers tracked", len(tb.m))
	}
}

// fakeAccept fails with errs, then reports the listener closed.
type fakeAccept struct{ errs []error }

func (f *fakeAccept) AcceptUnix() (*net.UnixConn, error) {
	if len(f.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return nil, err
}

// TestViewAcceptBackoff: EMFILE leaves the connection in the backlog, so
// accept fails again at once; the loop must wait longer each time instead
// of spinning.
func TestViewAcceptBackoff(t *testing.T) {
	v := testViewServer(t, nil)
	var slept []time.Duration
	v.sleep = func(d time.Duration) { slept = append(slept, d) }
	var errs []error
	for i := 0; i < 10; i++ {
		errs = append(errs, &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)})
	}
	v.Serve(&fakeAccept{errs: errs})
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	if len(slept) != len(want) {
		t.Fatalf("slept %v", slept)
	}
	for i := range want {
		if slept[i] != want[i]*time.Millisecond {
			t.Errorf("back-off %d = %v, want %v", i, slept[i], want[i]*time.Millisecond)
		}
	}
}

type fakeViews struct {
	mu   sync.Mutex
	pids []int
}

func (f *fakeViews) View(pid int) (*limits.View, error) {
	f.mu.Lock()
	f.pids = append(f.pids, pid)
	f.mu.Unlock()
	return &limits.View{Pid: pid, Mode: "v2",
		CPU:    limits.CPU{Count: limits.Value{Value: 1, Limited: true}, QuotaUS: 50000, PeriodUS: 100000},
		Memory: limits.Memory{Total: 268435456, Limit: limits.Value{Value: 268435456, Limited: true}}}, nil
}

func testViewServer(t *testing.T, lim ViewLimits) *ViewServer {
	t.Helper()
	kern, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return NewViewServer(DefaultViewConfig(""), lim, kern, "/proc", nil, logrus.NewEntry(log))
}

// TestViewSocket: a real socket; the answer is about the connecting process
// (this test), whatever it sends, and the socket is world-connectable in a
// 0755 directory.
func TestViewSocket(t *testing.T) {
	lim := &fakeViews{}
	v := testViewServer(t, lim)
	sock := filepath.Join(t.TempDir(), "view", "view.sock")
	ln, err := ListenView(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { v.Serve(ln); close(done) }()
	defer func() { ln.Close(); <-done }()
	for _, p := range []string{sock, filepath.Dir(sock)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o755)
		if p == sock {
			want = 0o666
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Asking about pid 1 changes nothing: the peer is never read.
	c.Write([]byte(`{"pid": 1}` + "\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// What the peer wrote is left unread, so closing the connection
	// resets it (ECONNRESET after the document).
	data, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	var doc struct {
		Pid                int `json:"pid"`
		RecommendedThreads int `json:"recommended_threads"`
		Memory             struct {
			Total uint64 `json:"total"`
		} `json:"memory"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	if len(lim.pids) != 1 || lim.pids[0] != os.Getpid() {
		t.Errorf("view computed for %v, want this process %d", lim.pids, os.Getpid())
	}
	if doc.Pid != os.Getpid() || doc.RecommendedThreads != 1 || doc.Memory.Total != 268435456 {
		t.Errorf("document %s", data)
	}

	// Over its rate: connections are closed unanswered, and nothing waits.
	ln.Close()
	<-done
	v.cfg.Burst, v.cfg.Rate = 1, 0.001
	v.peers = peerTable{m: map[string]*peer{}}
	if ln, err = ListenView(sock); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { v.Serve(ln); close(done) }()
	got := 0
	for i := 0; i < 5; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		data, err := io.ReadAll(c)
		c.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatal(err)
		}
		if len(data) > 0 {
			got++
		}
	}
	if got != 1 {
		t.Errorf("%d of 5 connections answered with a burst of 1", got)
	}
}

// TestSamePeer: the check that the pid still names the process that
// connected, with a pidfd (Linux 6.5) and with the start-time fallback.
func TestSamePeer(t *testing.T) {
	v := testViewServer(t, nil)
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pid := child.Process.Pid
	start, err := v.startTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if !v.samePeer(pid, pidfd, start) || !v.samePeer(pid, -1, start) {
		t.Error("live peer not recognized")
	}
	if v.samePeer(pid, -1, start+1) {
		t.Error("another start time accepted")
	}
	child.Process.Kill()
	child.Wait()
	if v.samePeer(pid, pidfd, start) {
		t.Error("exited peer accepted through its pidfd")
	}
	if v.samePeer(pid, -1, start) {
		t.Error("exited peer accepted by start time")
	}
}

// TestTopPidNS: a process in nested pid namespaces draws from the budget of
// the outermost one below the agent's, so making namespaces buys no budget.
func TestTopPidNS(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.RequireCommand(t, "unshare")
	nsIno := func(pid int) uint64 {
		st, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/pid")
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	self := nsIno(os.Getpid())
	cmd := exec.Command(unshare, "-p", "-f", unshare, "-p", "-f", "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	child := func(pid int) int {
		for i := 0; i < 200; i++ {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("pid %d has no child", pid)
		return 0
	}
	outer := child(cmd.Process.Pid) // in the first new pid namespace
	inner := child(outer)           // in one nested below it
	if nsIno(outer) == self || nsIno(inner) == nsIno(outer) {
		t.Fatal("unshare made no pid namespaces")
	}
	for _, tc := range []struct {
		name string
		pid  int
		want uint64
	}{{"agent's own", os.Getpid(), 0}, {"one level", outer, nsIno(outer)}, {"nested", inner, nsIno(outer)}} {
		got, err := topPidNS(fmt.Sprintf("/proc/%d/ns/pid", tc.pid), self)
		if err != nil || got != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

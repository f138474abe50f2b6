package loadavg

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCalcLoad(t *testing.T) {
	cases := []struct {
		name              string
		load, exp, active uint64
		want              uint64
	}{
		// 0 + 1·2048·(2048−1884) = 335872, rising: + 2047 → 337919 / 2048.
		{"first busy sample", 0, Exp1, 1, 164},
		// 164·1884 + 2048·164 = 644848 + 2047 → 646895 / 2048.
		{"second busy sample", 164, Exp1, 1, 315},
		// 2048·1884 / 2048, falling: no rounding up.
		{"idle after 1.00", Fixed1, Exp1, 0, 1884},
		{"idle after 1.00, 5 min", Fixed1, Exp5, 0, 2014},
		{"idle after 1.00, 15 min", Fixed1, Exp15, 0, 2037},
		{"idle stays idle", 0, Exp1, 0, 0},
		// At the fixed point the rounding keeps it exactly there.
		{"steady at 2", 2 * Fixed1, Exp1, 2, 2 * Fixed1},
	}
	for _, tc := range cases {
		if got := CalcLoad(tc.load, tc.exp, tc.active); got != tc.want {
			t.Errorf("%s: CalcLoad(%d, %d, %d) = %d, want %d", tc.name, tc.load, tc.exp, tc.active, got, tc.want)
		}
	}
}

func TestAvenrunConverges(t *testing.T) {
	var a Avenrun
	for range 2000 {
		a = a.Next(3)
	}
	if a != (Avenrun{3 * Fixed1, 3 * Fixed1, 3 * Fixed1}) {
		t.Errorf("after 2000 samples of 3 active: %v (%s), want exactly 3.00", a, a)
	}
	// One minute idle (12 samples) multiplies the averages by about
	// e^-1, e^-1/5 and e^-1/15: 3 → 1.10, 2.46, 2.81 (fixed point
	// truncates the 5-minute one to 2.45).
	for range 12 {
		a = a.Next(0)
	}
	if s := a.String(); s != "1.10 2.45 2.81" {
		t.Errorf("after a minute idle: %s", s)
	}
}

func TestAvenrunFormat(t *testing.T) {
	cases := []struct {
		a       Avenrun
		str     string
		sysinfo [3]uint64
	}{
		{Avenrun{0, 0, 0}, "0.00 0.00 0.00", [3]uint64{0, 0, 0}},
		{Avenrun{164, Fixed1, 3 * Fixed1 / 2}, "0.08 1.00 1.50", [3]uint64{164 << 5, 65536, 98304}},
		// 20 = 0.00977: /proc/loadavg rounds to the nearest hundredth.
		{Avenrun{20, 10, 2047}, "0.01 0.00 1.00", [3]uint64{640, 320, 2047 << 5}},
	}
	for _, tc := range cases {
		if s := tc.a.String(); s != tc.str {
			t.Errorf("%v: String %q, want %q", tc.a, s, tc.str)
		}
		if si := tc.a.Sysinfo(); si != tc.sysinfo {
			t.Errorf("%v: Sysinfo %v, want %v", tc.a, si, tc.sysinfo)
		}
	}
}

func TestParseState(t *testing.T) {
	cases := []struct {
		stat string
		want byte
		err  bool
	}{
		{stat: "1 (sh) S 0 1 1 0 -1 4194560", want: 'S'},
		{stat: "42 (a) b) c) R 1 42", want: 'R'},
		{stat: "7 (kworker/0:1) I 2 0", want: 'I'},
		{stat: "9 (dd) D 1", want: 'D'},
		{stat: "9 (dd)", err: true},
		{stat: "garbage", err: true},
	}
	for _, tc := range cases {
		got, err := ParseState(tc.stat)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseState(%q) = %q, %v; want %q, error %v", tc.stat, got, err, tc.want, tc.err)
		}
	}
}

// fixture builds a cgroup subtree and a /proc:
//
//	cg            procs 10 11 14   (14 has exited: no /proc entry)
//	cg/child      procs 12
//	cg/child/a/b  procs 13         (three levels down: counted)
//	cg/child/a/b/c procs 17        (four levels down: not counted, as in LXCFS)
//
// Threads: 10 R, 15 (of 10) S, 11 D, 12 R, 16 (of 12) I, 13 R, 17 R.
func fixture(t *testing.T) (proc, cg string) {
	t.Helper()
	dir := t.TempDir()
	proc, cg = filepath.Join(dir, "proc"), filepath.Join(dir, "cg")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(cg, "cgroup.procs"), "10\n11\n14\n")
	write(filepath.Join(cg, "cpu.shares"), "1024\n")
	write(filepath.Join(cg, "child/cgroup.procs"), "12\n")
	write(filepath.Join(cg, "child/a/cgroup.procs"), "")
	write(filepath.Join(cg, "child/a/b/cgroup.procs"), "13\n")
	write(filepath.Join(cg, "child/a/b/c/cgroup.procs"), "17\n")
	for _, th := range []struct{ pid, tid, state string }{
		{"10", "10", "R"}, {"10", "15", "S"}, {"11", "11", "D"}, {"12", "12", "R"}, {"12", "16", "I"}, {"13", "13", "R"}, {"17", "17", "R"},
	} {
		write(filepath.Join(proc, th.pid, "task", th.tid, "stat"), th.tid+" (prog (x)) "+th.state+" 1 1 1 0 -1\n")
	}
	return proc, cg
}

func TestCount(t *testing.T) {
	proc, cg := fixture(t)
	c, err := Count(proc, cg)
	if err != nil {
		t.Fatal(err)
	}
	if c != (Counts{Active: 4, Threads: 6}) {
		t.Errorf("Count = %+v, want 4 active (10 R, 11 D, 12 R, 13 R) of 6 threads", c)
	}
	if _, err := Count(proc, filepath.Join(cg, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a removed cgroup: err %v, want not exist", err)
	}
	if err := os.WriteFile(filepath.Join(proc, "12/task/12/stat"), []byte("12 no-parens R\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Count(proc, cg); err == nil {
		t.Error("a malformed stat line: no error")
	}
}

func TestSampler(t *testing.T) {
	proc, cg := fixture(t)
	resolveErr := error(nil)
	s := &Sampler{ProcRoot: proc, Resolve: func(pid int) (string, error) {
		if pid != 1000 {
			t.Errorf("resolve pid %d", pid)
		}
		return cg, resolveErr
	}}
	if _, ok := s.Loads(1000); ok {
		t.Fatal("loads before Register")
	}
	release1 := s.Register(1000)
	release2 := s.Register(1000) // an exec of the same container
	if a, ok := s.Loads(1000); !ok || a != (Avenrun{}) {
		t.Fatalf("after Register: %v %v, want 0 0 0", a, ok)
	}
	s.Sample()
	s.Sample()
	want := Avenrun{}.Next(4).Next(4)
	if a, _ := s.Loads(1000); a != want {
		t.Errorf("after two samples: %v, want %v", a, want)
	}
	resolveErr = errors.New("init gone")
	s.Sample()
	if a, _ := s.Loads(1000); a != want {
		t.Errorf("a failed sample changed the average: %v, want %v", a, want)
	}
	release2()
	release2() // idempotent
	if _, ok := s.Loads(1000); !ok {
		t.Fatal("one connection left, but unregistered")
	}
	release1()
	if _, ok := s.Loads(1000); ok {
		t.Fatal("still registered after the last release")
	}
	s.Sample() // nothing registered: nothing resolved
}

package limits

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func fixture(t *testing.T, name string) *Reader {
	t.Helper()
	root := filepath.Join("testdata", name)
	r, err := NewReader(filepath.Join(root, "proc"), root)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func src(t *testing.T, fixtureName string, level int, cgroup, file string) *Source {
	return &Source{Cgroup: cgroup, Level: level, File: filepath.Join("testdata", fixtureName, file)}
}

func eqSource(a, b *Source) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestModes(t *testing.T) {
	for name, want := range map[string]string{"v1-hybrid": "hybrid", "v1-comounted": "v1", "v2": "v2", "cgroupns": "v2", "v1-mountroot": "v1"} {
		if got := fixture(t, name).Mode(); got != want {
			t.Errorf("%s: Mode() = %s, want %s", name, got, want)
		}
	}
}

func TestCPU(t *testing.T) {
	cases := []struct {
		name, fixture string
		pid           int
		count         uint64
		limited       bool
		quota, period int64
		source        *Source
		cpuset        string
	}{
		{"v1 separate cpu/cpuacct: parent quota, -1 at the leaf", "v1-hybrid", 100, 1, true, 50000, 100000,
			src(t, "v1-hybrid", 1, "/parent", "sys/fs/cgroup/cpu/parent/cpu.cfs_quota_us"), "0-1"},
		{"quota below one CPU", "v1-hybrid", 101, 1, true, 10000, 100000,
			src(t, "v1-hybrid", 0, "/big", "sys/fs/cgroup/cpu/big/cpu.cfs_quota_us"), "0-3"},
		{"quota above the cpuset size", "v1-hybrid", 102, 4, true, 400000, 100000,
			src(t, "v1-hybrid", 0, "/over", "sys/fs/cgroup/cpu/over/cpu.cfs_quota_us"), "0-1"},
		{"v1 co-mounted cpu,cpuacct and a non-contiguous cpuset", "v1-comounted", 200, 2, true, 150000, 100000,
			src(t, "v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us"), "0-3,8,10-11"},
		{"v2: parent limit, max at the leaf", "v2", 300, 1, true, 50000, 100000,
			src(t, "v2", 1, "/kubepods/pod1", "sys/fs/cgroup/kubepods/pod1/cpu.max"), "0-3"},
		{"v2 two CPUs", "v2", 301, 2, true, 200000, 100000,
			src(t, "v2", 0, "/noswap", "sys/fs/cgroup/noswap/cpu.max"), "0-3"},
		{"v2 unlimited", "v2", 302, 0, false, 0, 0, nil, "0-3"},
		{"cgroup namespace: reachable relative path", "cgroupns", 400, 1, true, 100000, 100000,
			src(t, "cgroupns", 0, "/child", "sys/fs/cgroup/child/cpu.max"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fixture(t, tc.fixture).CPU(tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			if got.Count.Limited != tc.limited || got.Count.Value != tc.count || got.QuotaUS != tc.quota || got.PeriodUS != tc.period {
				t.Errorf("count %+v quota %d/%d, want %d (limited %v) from %d/%d", got.Count, got.QuotaUS, got.PeriodUS, tc.count, tc.limited, tc.quota, tc.period)
			}
			if !eqSource(got.Count.Source, tc.source) {
				t.Errorf("source %+v, want %+v", got.Count.Source, tc.source)
			}
			if got.Cpuset != tc.cpuset {
				t.Errorf("cpuset %q, want %q", got.Cpuset, tc.cpuset)
			}
			if got.HostOnline != 4 {
				t.Errorf("host online %d, want 4", got.HostOnline)
			}
		})
	}
}

func TestMemory(t *testing.T) {
	const hostTotal, hostSwap = 2097152 * 1024, 1048576 * 1024
	cases := []struct {
		name, fixture string
		pid           int
		want          Memory
	}{
		{"v1 child limit below parent", "v1-hybrid", 100, Memory{
			Limit: Value{134217728, true, src(t, "v1-hybrid", 0, "/parent/child", "sys/fs/cgroup/memory/parent/child/memory.limit_in_bytes")},
			Total: 134217728, HostTotal: hostTotal, Usage: 52428800, Shmem: 8192, HostSwapTotal: hostSwap}},
		{"v1 sentinel: limit above host RAM", "v1-hybrid", 101, Memory{
			Total: hostTotal, HostTotal: hostTotal, Usage: 1048576, HostSwapTotal: hostSwap}},
		{"usage above limit", "v1-hybrid", 102, Memory{
			Limit: Value{268435456, true, src(t, "v1-hybrid", 0, "/over", "sys/fs/cgroup/memory/over/memory.limit_in_bytes")},
			Total: 268435456, HostTotal: hostTotal, Usage: 314572800, HostSwapTotal: hostSwap}},
		{"v1 memsw: swap = memsw - RAM", "v1-comounted", 200, Memory{
			Limit: Value{268435456, true, src(t, "v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes")},
			Total: 268435456, HostTotal: hostTotal, Usage: 104857600, Shmem: 2048,
			SwapLimit: Value{268435456, true, src(t, "v1-comounted", 0, "/docker/abc", "sys/fs/cgroup/memory/docker/abc/memory.memsw.limit_in_bytes")},
			SwapTotal: 268435456, HostSwapTotal: hostSwap, SwapUsage: 10485760}},
		{"v2 parent limit, max leaf, swap max", "v2", 300, Memory{
			Limit: Value{268435456, true, src(t, "v2", 1, "/kubepods/pod1", "sys/fs/cgroup/kubepods/pod1/memory.max")},
			Total: 268435456, HostTotal: hostTotal, Usage: 73400320, Shmem: 65536,
			SwapTotal: hostSwap, HostSwapTotal: hostSwap, SwapUsage: 1048576}},
		{"v2 no swap files", "v2", 301, Memory{
			Limit: Value{1073741824, true, src(t, "v2", 0, "/noswap", "sys/fs/cgroup/noswap/memory.max")},
			Total: 1073741824, HostTotal: hostTotal, Usage: 1000, HostSwapTotal: hostSwap}},
		{"v2 swap limited", "v2", 302, Memory{
			Limit: Value{536870912, true, src(t, "v2", 0, "/swapped", "sys/fs/cgroup/swapped/memory.max")},
			Total: 536870912, HostTotal: hostTotal, Usage: 1000,
			SwapLimit: Value{134217728, true, src(t, "v2", 0, "/swapped", "sys/fs/cgroup/swapped/memory.swap.max")},
			SwapTotal: 134217728, HostSwapTotal: hostSwap, SwapUsage: 4096}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fixture(t, tc.fixture).Memory(tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			if !eqSource(got.Limit.Source, tc.want.Limit.Source) || !eqSource(got.SwapLimit.Source, tc.want.SwapLimit.Source) {
				t.Errorf("sources %+v / %+v, want %+v / %+v", got.Limit.Source, got.SwapLimit.Source, tc.want.Limit.Source, tc.want.SwapLimit.Source)
			}
			got.Limit.Source, got.SwapLimit.Source, tc.want.Limit.Source, tc.want.SwapLimit.Source = nil, nil, nil, nil
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPidsAndStartTime(t *testing.T) {
	r := fixture(t, "v1-hybrid")
	p, err := r.Pids(100)
	if err != nil || p.Current.Value != 7 || !p.Current.Limited {
		t.Errorf("Pids(100) = %+v, %v; want 7", p, err)
	}
	st, err := r.StartTime(100)
	if err != nil || st != 123450*time.Millisecond {
		t.Errorf("StartTime(100) = %v, %v; want 123.45s (12345 ticks at AT_CLKTCK 100)", st, err)
	}
	st, err = fixture(t, "v1-comounted").StartTime(200)
	if err != nil || st != 42*time.Second {
		t.Errorf("command name with ') (': StartTime = %v, %v; want 42s", st, err)
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	cases := []struct {
		name, fixture string
		call          func(r *Reader) error
		file          string
	}{
		{"v1 quota not a number", "v1-hybrid", func(r *Reader) error { _, err := r.CPU(103); return err }, "cpu/bad-quota/cpu.cfs_quota_us"},
		{"v1 zero period", "v1-hybrid", func(r *Reader) error { _, err := r.CPU(104); return err }, "cpu/bad-period/cpu.cfs_period_us"},
		{"v1 memory limit not a number", "v1-hybrid", func(r *Reader) error { _, err := r.Memory(103); return err }, "memory/bad-quota/memory.limit_in_bytes"},
		{"empty pids.current", "v1-hybrid", func(r *Reader) error { _, err := r.Pids(103); return err }, "pids/bad-quota/pids.current"},
		{"truncated stat", "v1-hybrid", func(r *Reader) error { _, err := r.StartTime(105); return err }, "proc/105/stat"},
		{"v2 cpu.max garbage", "v2", func(r *Reader) error { _, err := r.CPU(303); return err }, "bad-cpu-max/cpu.max"},
		{"v2 negative period", "v2", func(r *Reader) error { _, err := r.CPU(304); return err }, "bad-period/cpu.max"},
		{"v2 memory.max not a number", "v2", func(r *Reader) error { _, err := r.Memory(305); return err }, "bad-memory-max/memory.max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(fixture(t, tc.fixture))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if !strings.HasSuffix(pe.File, tc.file) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q names %q, want %q", err, pe.File, tc.file)
			}
		})
	}
}

func TestCgroupNamespaceEscape(t *testing.T) {
	_, err := fixture(t, "cgroupns").Memory(401)
	if err == nil || !strings.Contains(err.Error(), "/../../other") || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("err = %v, want a clear error about a path outside the mount", err)
	}
}

func TestNoController(t *testing.T) {
	// The hybrid host's cgroup2 offers no controllers: pids comes from v1,
	// and a controller nobody mounts is a NoControllerError.
	r := fixture(t, "v1-hybrid")
	lines, err := r.cgroupLines(100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.hierarchyOf(100, "hugetlb", lines)
	var nc *NoControllerError
	if !errors.As(err, &nc) || nc.Controller != "hugetlb" {
		t.Fatalf("err = %v, want NoControllerError{hugetlb}", err)
	}
}

func TestParsers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{"0-3,8,10-11", []int{0, 1, 2, 3, 8, 10, 11}, false},
		{"0", []int{0}, false},
		{"", nil, false},
		{"\n", nil, false},
		{"3-1", nil, true},
		{"a", nil, true},
		{"0-", nil, true},
	} {
		got, err := ParseCPUList(c.in)
		if (err != nil) != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v", c.in, got, err)
		}
	}
	for _, c := range []struct {
		in           string
		q, p         int64
		limited, bad bool
	}{
		{"max 100000", 0, 100000, false, false},
		{"50000 100000", 50000, 100000, true, false},
		{"50000", 0, 0, false, true},
		{"0 100000", 0, 0, false, true},
		{"max 0", 0, 0, false, true},
		{"1 2 3", 0, 0, false, true},
	} {
		q, p, l, err := ParseCPUMax(c.in)
		if (err != nil) != c.bad || (!c.bad && (q != c.q || p != c.p || l != c.limited)) {
			t.Errorf("ParseCPUMax(%q) = %d %d %v %v", c.in, q, p, l, err)
		}
	}
	if _, l, err := ParseMax("max\n"); l || err != nil {
		t.Errorf("ParseMax(max) limited=%v err=%v", l, err)
	}
	if v, l, err := ParseMax("268435456\n"); !l || v != 268435456 || err != nil {
		t.Errorf("ParseMax(268435456) = %d %v %v", v, l, err)
	}
	for _, bad := range []string{"", "-1", "lots", "1\n2"} {
		if _, _, err := ParseMax(bad); err == nil {
			t.Errorf("ParseMax(%q) accepted", bad)
		}
	}
	if _, ok := under("/", "/../x"); ok {
		t.Error(`"/../x" must not be reachable under "/"`)
	}
	if rest, ok := under("/kubepods", "/kubepods/a/b"); !ok || strings.Join(rest, "/") != "a/b" {
		t.Errorf("under(/kubepods, /kubepods/a/b) = %v %v", rest, ok)
	}
	if _, ok := under("/kubepods", "/kubepodsX/a"); ok {
		t.Error("prefix without a path boundary accepted")
	}
}

func TestRealHost(t *testing.T) {
	r, err := NewReader("/proc", "/")
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.View(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if v.Memory.HostTotal == 0 || v.Memory.Total == 0 || v.Memory.Total > v.Memory.HostTotal || v.CPU.HostOnline == 0 {
		t.Errorf("implausible view of this process: %+v", v)
	}
}

// TestLimitUpdatesSeenWithinTTL: limits are cached for limitTTL, usage is
// always fresh (runc update must show within a second).
func TestLimitUpdatesSeenWithinTTL(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("testdata/v2")); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(filepath.Join(root, "proc"), root)
	if err != nil {
		t.Fatal(err)
	}
	leaf := filepath.Join(root, "sys/fs/cgroup/noswap")
	m, err := r.Memory(301)
	if err != nil || m.Total != 1073741824 {
		t.Fatalf("Memory = %d, %v", m.Total, err)
	}
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(leaf, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory.max", "536870912")
	write("memory.current", "2000")
	m, _ = r.Memory(301)
	if m.Usage != 2000 {
		t.Errorf("usage %d: usage must never be cached", m.Usage)
	}
	deadline := time.Now().Add(time.Second)
	for m.Total != 536870912 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		m, _ = r.Memory(301)
	}
	if m.Total != 536870912 {
		t.Errorf("memory.max update not seen within 1s: total %d", m.Total)
	}
}

// TestV2ChargedToAncestor: on v2 a child whose parent did not enable memory
// and pids in cgroup.subtree_control has no memory.current or pids.current;
// the kernel charges its processes to the nearest ancestor that has them.
func TestV2ChargedToAncestor(t *testing.T) {
	r := fixture(t, "v2")
	m, p, pidsErr, err := r.MemoryAndPids(307, 1)
	if err != nil || pidsErr != nil {
		t.Fatal(err, pidsErr)
	}
	if m.Total != 536870912 || m.Usage != 4096 || m.Shmem != 512 {
		t.Errorf("memory %+v: want the parent's limit, usage and shmem", m)
	}
	if !p.Current.Limited || p.Current.Value != 3 || p.Current.Source == nil || p.Current.Source.Level != 1 {
		t.Errorf("pids %+v: want 3 from the parent (level 1)", p.Current)
	}
}

func TestLoadCgroup(t *testing.T) {
	cases := []struct {
		fixture string
		pid     int
		want    string
	}{
		{"v1-hybrid", 100, "sys/fs/cgroup/cpu/parent/child"},
		{"v2", 300, "sys/fs/cgroup/kubepods/pod1/ctr"},
	}
	for _, tc := range cases {
		got, err := fixture(t, tc.fixture).LoadCgroup(tc.pid)
		if want := filepath.Join("testdata", tc.fixture, tc.want); err != nil || got != want {
			t.Errorf("%s pid %d: %q, %v; want %q", tc.fixture, tc.pid, got, err, want)
		}
	}
	if _, err := fixture(t, "v2").LoadCgroup(999); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a pid that is gone: %v, want not exist", err)
	}
}

package limits

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseUintInt(t *testing.T) {
	for _, c := range []struct {
		in  string
		u   uint64
		i   int64
		bad bool // for both
	}{
		{"42\n", 42, 42, false},
		{"  7  ", 7, 7, false},
		{"", 0, 0, true},
		{"1\n2\n", 0, 0, true},
		{"4k", 0, 0, true},
	} {
		u, err := ParseUint(c.in)
		if (err != nil) != c.bad || u != c.u {
			t.Errorf("ParseUint(%q) = %d, %v", c.in, u, err)
		}
		i, err := ParseInt(c.in)
		if (err != nil) != c.bad || i != c.i {
			t.Errorf("ParseInt(%q) = %d, %v", c.in, i, err)
		}
	}
	if i, err := ParseInt("-1\n"); i != -1 || err != nil {
		t.Errorf("ParseInt(-1) = %d, %v", i, err)
	}
	if _, err := ParseUint("-1"); err == nil {
		t.Error("ParseUint(-1) accepted")
	}
}

func TestParseStartTime(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     uint64
		bad      bool
	}{
		{"plain", "1 (sh) S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 777 0 0", 777, false},
		{"spaces and ) in comm", "1 (a) b) c (d) S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 888 9", 888, false},
		{"truncated", "1 (sh) S 1 2", 0, true},
		{"no comm", "1 sh S", 0, true},
		{"not a number", "1 (sh) S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 x 0", 0, true},
	} {
		got, err := ParseStartTime(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%s: ParseStartTime = %d, %v", c.name, got, err)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	const ok = "MemTotal:       2097152 kB\nMemFree: 1 kB\nSwapTotal:             0 kB\nHugePages_Total:       0\n"
	m, err := ParseMeminfo(strings.NewReader(ok), "MemTotal", "SwapTotal", "HugePages_Total")
	if err != nil || m["MemTotal"] != 2<<30 || m["SwapTotal"] != 0 || m["HugePages_Total"] != 0 {
		t.Errorf("ParseMeminfo = %v, %v", m, err)
	}
	for _, bad := range []string{
		"MemFree: 1 kB\n",                     // MemTotal missing
		"MemTotal: lots kB\n",                 // not a number
		"MemTotal:\n",                         // no value
		"MemTotal: 99999999999999999999 kB\n", // overflows
	} {
		if _, err := ParseMeminfo(strings.NewReader(bad), "MemTotal"); err == nil {
			t.Errorf("ParseMeminfo(%q) accepted", bad)
		}
	}
}

func TestKeyed(t *testing.T) {
	stat := []byte("cache 1\nshmem 4096\nshmem_x 7\ntotal_shmem 8192\nmapped_file x\nlast 9")
	for _, tc := range []struct {
		key   string
		v     uint64
		found bool
	}{{"shmem", 4096, true}, {"total_shmem", 8192, true}, {"last", 9, true}, {"swap", 0, false}, {"shmem_", 0, false}} {
		// An unwanted bad line (mapped_file) must not matter.
		if v, found, err := Keyed(stat, tc.key); v != tc.v || found != tc.found || err != nil {
			t.Errorf("Keyed(%q) = %d, %v, %v; want %d, %v", tc.key, v, found, err, tc.v, tc.found)
		}
	}
	if _, found, err := Keyed([]byte("shmem -3\n"), "shmem"); !found || err == nil {
		t.Error("negative shmem accepted")
	}
	if n := testing.AllocsPerRun(100, func() { Keyed(stat, "total_shmem") }); n != 0 {
		t.Errorf("Keyed allocates %v times a call", n)
	}
}

func TestParseProcCgroup(t *testing.T) {
	got, err := ParseProcCgroup(strings.NewReader("12:name=systemd:/a\n2:cpu,cpuacct:/a/b\n0::/../x\n"))
	want := []CgroupLine{
		{ID: 12, Controllers: []string{"name=systemd"}, Path: "/a"},
		{ID: 2, Controllers: []string{"cpu", "cpuacct"}, Path: "/a/b"},
		{ID: 0, Path: "/../x"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseProcCgroup = %+v, %v", got, err)
	}
	for _, bad := range []string{"x:cpu:/", "1:cpu\n", "1:cpu:relative"} {
		if _, err := ParseProcCgroup(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseProcCgroup(%q) accepted", bad)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	const in = `24 23 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 /docker/abc /sys/fs/cgroup/my\040memory rw - cgroup cgroup rw,memory
27 24 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 24 0:25 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,noprefix,release_agent=/x
29 24 0:26 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
`
	got, err := ParseMountinfo(strings.NewReader(in))
	want := []Mount{
		{Root: "/", Point: "/sys/fs/cgroup/cpu,cpuacct", Controllers: []string{"cpu", "cpuacct"}},
		{Root: "/docker/abc", Point: "/sys/fs/cgroup/my memory", Controllers: []string{"memory"}},
		{Root: "/", Point: "/sys/fs/cgroup/cpuset", Controllers: []string{"cpuset"}},
		{Root: "/..", Point: "/sys/fs/cgroup/unified", V2: true},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMountinfo:\ngot  %+v, %v\nwant %+v", got, err, want)
	}
	if _, err := ParseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("a line without ' - ' accepted")
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		root, p string
		rest    []string
		ok      bool
	}{
		{"/", "/", nil, true},
		{"/", "/child", []string{"child"}, true},
		{"/", "/../../x", nil, false},
		{"/kubepods", "/kubepods/a/b", []string{"a", "b"}, true},
		{"/kubepods", "/kubepodsX/a", nil, false},
		{"/kubepods", "/", nil, false},
		{"/..", "/../x", []string{"x"}, true},
		{"/a", "/a/../b", nil, false},
	} {
		rest, ok := under(c.root, c.p)
		if ok != c.ok || !reflect.DeepEqual(rest, c.rest) && len(rest)+len(c.rest) > 0 {
			t.Errorf("under(%q, %q) = %v, %v; want %v, %v", c.root, c.p, rest, ok, c.rest, c.ok)
		}
	}
}

func TestClockTicks(t *testing.T) {
	dir := t.TempDir()
	auxv := func(pairs ...uint64) string {
		b := make([]byte, 8*len(pairs))
		for i, v := range pairs {
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
		f := filepath.Join(dir, "auxv")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if hz, err := clockTicks(auxv(6, 4096, 17, 250, 0, 0)); err != nil || hz != 250 {
		t.Errorf("AT_CLKTCK 250: got %d, %v", hz, err)
	}
	_, err := clockTicks(auxv(6, 4096, 0, 0))
	var pe *ParseError
	if !errors.As(err, &pe) || !strings.HasSuffix(pe.File, "auxv") {
		t.Errorf("no AT_CLKTCK: err = %v, want a ParseError naming auxv (never assume 100)", err)
	}
}

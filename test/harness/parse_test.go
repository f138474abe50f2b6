package harness

import (
	"github.com/seccompagent/seccompagent/test/testenv"
	"os/exec"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseUptime(t *testing.T) {
	// Forms from busybox 1.35 procps/uptime.c (with utmp support, as
	// Debian builds it): "%u day%s, " then "%2u:%02u" or "%u min".
	cases := []struct {
		out  string
		want time.Duration
	}{
		{" 07:55:08 up 0 min,  0 users,  load average: 0.00, 0.03, 0.00\n", 0},
		{" 07:55:08 up 7 min,  load average: 0.00, 0.03, 0.00\n", 7 * time.Minute},
		{" 07:55:08 up  2:44,  0 users,  load average: 0.00, 0.03, 0.00\n", 2*time.Hour + 44*time.Minute},
		{" 07:55:08 up 12:05,  0 users,  load average: 0.00, 0.03, 0.00\n", 12*time.Hour + 5*time.Minute},
		{" 07:55:08 up 1 day, 0 min,  0 users,  load average: 1.00, 0.50, 0.25\n", 24 * time.Hour},
		{" 07:55:08 up 41 days,  3:07,  0 users,  load average: 1.00, 0.50, 0.25\n", 41*24*time.Hour + 3*time.Hour + 7*time.Minute},
	}
	for _, c := range cases {
		got, err := ParseUptime(c.out)
		if err != nil || got != c.want {
			t.Errorf("ParseUptime(%q) = %v, %v; want %v", c.out, got, err, c.want)
		}
	}
	if _, err := ParseUptime("garbage"); err == nil {
		t.Error("ParseUptime(garbage) succeeded")
	}
}

// TestParseUptimeHostBusybox checks the parser against the real busybox on
// this host: its uptime must match /proc/uptime to the minute.
func TestParseUptimeHostBusybox(t *testing.T) {
	bb := testenv.RequireCommand(t, "busybox")
	before, _ := HostUptime()
	out, err := exec.Command(bb, "uptime").Output()
	if err != nil {
		t.Fatalf("busybox uptime: %v", err)
	}
	after, _ := HostUptime()
	got, err := ParseUptime(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if got < before.Truncate(time.Minute)-time.Minute || got > after {
		t.Errorf("busybox uptime %q parsed as %v; /proc/uptime %v..%v", out, got, before, after)
	}
}

func TestParseFree(t *testing.T) {
	out := `              total        used        free      shared  buff/cache   available
Mem:       24684092       96748    24270944        8856      316400    24343376
Swap:             0           0           0
`
	got, err := ParseFree(out)
	want := FreeMem{Total: 24684092, Used: 96748, Free: 24270944, Shared: 8856, BuffCache: 316400, Available: 24343376}
	if err != nil || got != want {
		t.Errorf("ParseFree = %+v, %v; want %+v", got, err, want)
	}
	// A negative "used" is printed as a wrapped unsigned number.
	wrapped := "Mem:         262144 18014398509427212      258000           0      316400    24343376\n"
	got, err = ParseFree(wrapped)
	if err != nil || got.Used <= got.Total {
		t.Errorf("ParseFree(wrapped) = %+v, %v; want Used > Total", got, err)
	}
	if _, err := ParseFree("Swap: 0 0 0\n"); err == nil {
		t.Error("ParseFree without Mem: succeeded")
	}
}

func TestParseNprocAndProbe(t *testing.T) {
	if n, err := ParseNproc(" 2\n"); err != nil || n != 2 {
		t.Errorf("ParseNproc = %d, %v", n, err)
	}
	p := ParseProbe("junk line\nnprocs_onln=1\nloads=1 2 3\naffinity_mask=0,1\nsysinfo_null_errno=14\n")
	if n, err := p.Int("nprocs_onln"); err != nil || n != 1 {
		t.Errorf("nprocs_onln = %d, %v", n, err)
	}
	if p["loads"] != "1 2 3" || p["affinity_mask"] != "0,1" {
		t.Errorf("probe = %v", p)
	}
	if _, err := p.Uint("missing"); err == nil {
		t.Error("missing key succeeded")
	}
}

func TestSections(t *testing.T) {
	args := SectionedCommand("nproc", "free", "echo a=b")
	if len(args) != 3 || args[0] != "sh" {
		t.Fatalf("args = %q", args)
	}
	out, err := exec.Command("sh", "-c", args[2]).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := SplitSections(string(out))
	if len(s) != 3 || s["echo a=b"] != "a=b\n" || strings.TrimSpace(s["nproc"]) == "" || !strings.Contains(s["free"], "Mem:") {
		t.Errorf("sections = %q from %q", s, out)
	}
}

func TestBundleSpec(t *testing.T) {
	spec := buildSpec("/rootfs", "/seccompagent-e2e/x", BundleOptions{
		Args: []string{"nproc"}, MemoryLimit: 256 << 20, CPUQuota: 50000, CPUPeriod: 100000,
		Cpuset: "0", ListenerPath: "/run/a.sock", Annotations: map[string]string{"k": "v"},
	})
	if spec.Version != OCIVersion || !spec.Root.Readonly || spec.Linux.CgroupsPath != "/seccompagent-e2e/x" {
		t.Errorf("spec = %+v", spec)
	}
	r := spec.Linux.Resources
	if *r.Memory.Limit != 256<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || r.CPU.Cpus != "0" {
		t.Errorf("resources = %+v", r)
	}
	sc := spec.Linux.Seccomp
	if sc == nil || sc.ListenerPath != "/run/a.sock" || sc.DefaultAction != specs.ActAllow ||
		len(sc.Syscalls) != 1 || sc.Syscalls[0].Action != specs.ActNotify ||
		strings.Join(sc.Syscalls[0].Names, ",") != "sysinfo,sched_getaffinity" || len(sc.Architectures) != 3 {
		t.Errorf("seccomp = %+v", sc)
	}
	if spec.Annotations["k"] != "v" {
		t.Errorf("annotations = %v", spec.Annotations)
	}
	if s := buildSpec("/rootfs", "/x", BundleOptions{}); s.Linux.Seccomp != nil || s.Linux.Resources.Memory != nil || s.Linux.Resources.CPU != nil {
		t.Errorf("no-option spec has seccomp or limits: %+v", s.Linux)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("got %q", got)
	}
}

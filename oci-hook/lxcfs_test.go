package ocihook

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// lxcfsAt is a host whose LXCFS at dir serves files.
func lxcfsAt(dir string, files ...string) LXCFS {
	return LXCFS{Dir: dir, Files: files}
}

func TestLXCFSMounts(t *testing.T) {
	all := LXCFSFiles
	noSlab := slices.DeleteFunc(slices.Clone(all), func(f string) bool { return f == "/proc/slabinfo" })
	userMeminfo := specs.Mount{Destination: "/proc/meminfo/", Type: "bind", Source: "/srv/meminfo", Options: []string{"bind"}}
	cases := []struct {
		name   string
		ann    map[string]string
		env    []string
		lxcfs  LXCFS
		extra  []specs.Mount // mounts the config already has after /proc and /dev
		want   []string      // LXCFS destinations added, in order
		err    []string      // substrings of the error
		noEnab bool
	}{
		{name: "auto with LXCFS mounts every file", lxcfs: lxcfsAt("/var/lib/lxcfs", all...), want: all},
		{name: "explicit auto", ann: map[string]string{AnnotationLXCFS: " auto "}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...), want: all},
		{name: "only the files LXCFS serves", lxcfs: lxcfsAt("/run/lx", noSlab...), want: noSlab},
		{name: "auto without LXCFS mounts nothing", lxcfs: LXCFS{Dir: "/var/lib/lxcfs", Missing: "no fuse.lxcfs mount at /var/lib/lxcfs"}},
		{name: "false with LXCFS mounts nothing", ann: map[string]string{AnnotationLXCFS: "false"}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...)},
		{name: "env false", env: []string{"SECCOMPAGENT_LXCFS=false"}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...)},
		{name: "true with LXCFS", ann: map[string]string{AnnotationLXCFS: "true"}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...), want: all},
		{
			name: "the user's own mount wins", lxcfs: lxcfsAt("/var/lib/lxcfs", all...),
			extra: []specs.Mount{userMeminfo},
			want:  slices.DeleteFunc(slices.Clone(all), func(f string) bool { return f == "/proc/meminfo" }),
		},
		{
			name: "true without LXCFS", ann: map[string]string{AnnotationLXCFS: "true"},
			lxcfs: LXCFS{Dir: "/var/lib/lxcfs", Missing: "no fuse.lxcfs mount at /var/lib/lxcfs"},
			err:   []string{"annotation seccompagent.io/lxcfs", "no fuse.lxcfs mount at /var/lib/lxcfs"},
		},
		{
			name: "true with no LXCFS given at all", env: []string{"SECCOMPAGENT_LXCFS=true"},
			err: []string{"env SECCOMPAGENT_LXCFS", "no fuse.lxcfs mount at /var/lib/lxcfs"},
		},
		{
			name: "bad value", ann: map[string]string{AnnotationLXCFS: "yes"}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...),
			err: []string{`annotation seccompagent.io/lxcfs="yes"`, "auto, true or false"},
		},
		{
			name: "bad env value", env: []string{"SECCOMPAGENT_LXCFS=on"},
			err: []string{`env SECCOMPAGENT_LXCFS="on"`, "auto, true or false"},
		},
		{
			name: "a disabled container gets no files", noEnab: true,
			ann: map[string]string{AnnotationLXCFS: "true"}, lxcfs: lxcfsAt("/var/lib/lxcfs", all...),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{
				Version: specs.Version,
				Process: &specs.Process{Args: []string{"free"}, Env: tc.env},
				Root:    &specs.Root{Path: "rootfs"},
				Mounts: append([]specs.Mount{
					{Destination: "/proc", Type: "proc", Source: "proc"},
					{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
				}, tc.extra...),
				Annotations: map[string]string{AnnotationEnable: "true"},
				Linux:       &specs.Linux{},
			}
			if tc.noEnab {
				spec.Annotations[AnnotationEnable] = "false"
			}
			for k, v := range tc.ann {
				spec.Annotations[k] = v
			}
			in := mustJSON(t, spec)
			mod := Modifier{LXCFS: tc.lxcfs}
			out, res, err := mod.ModifyConfig(in)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error; want one naming %q", tc.err)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.LXCFSMounts, tc.want) {
				t.Errorf("LXCFSMounts %v, want %v", res.LXCFSMounts, tc.want)
			}
			got := parseSpec(t, out)
			// The mounts before ours are kept as they were, in order.
			if len(got.Mounts) != len(spec.Mounts)+len(tc.want) {
				t.Fatalf("%d mounts, want %d + %d", len(got.Mounts), len(spec.Mounts), len(tc.want))
			}
			for i, m := range spec.Mounts {
				if !jsonEqual(t, got.Mounts[i], m) {
					t.Errorf("mount %d changed: %+v, was %+v", i, got.Mounts[i], m)
				}
			}
			for i, dest := range tc.want {
				m := got.Mounts[len(spec.Mounts)+i]
				want := specs.Mount{Destination: dest, Type: "bind", Source: tc.lxcfs.Dir + dest, Options: []string{"bind", "rprivate"}}
				if !jsonEqual(t, m, want) {
					t.Errorf("mount for %s: %+v, want %+v", dest, m, want)
				}
			}
			// Idempotent: a second run gives the same bytes.
			again, res2, err := mod.ModifyConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if res2.Changed || !bytes.Equal(again, out) || len(res2.LXCFSMounts) != 0 {
				t.Errorf("second run changed %v, added %v", res2.Changed, res2.LXCFSMounts)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}

func TestHasLXCFSMount(t *testing.T) {
	const lx = "64 43 0:41 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other\n"
	const root = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
	cases := []struct {
		name, mountinfo, dir string
		want                 bool
		err                  bool
	}{
		{name: "debian unit", mountinfo: root + lx, dir: "/var/lib/lxcfs", want: true},
		{name: "other dir", mountinfo: root + lx, dir: "/run/lxcfs"},
		{name: "parent dir", mountinfo: root + lx, dir: "/var/lib"},
		{name: "none", mountinfo: root, dir: "/var/lib/lxcfs"},
		{name: "a tmpfs mounted over it", mountinfo: root + lx + "70 64 0:50 / /var/lib/lxcfs rw - tmpfs tmpfs rw\n", dir: "/var/lib/lxcfs"},
		{name: "plain fuse", mountinfo: root + "64 43 0:41 / /var/lib/lxcfs rw - fuse sshfs rw\n", dir: "/var/lib/lxcfs"},
		{name: "escaped space", mountinfo: root + "64 43 0:41 / /tmp/a\\040b rw shared:5 master:2 - fuse.lxcfs lxcfs rw\n", dir: "/tmp/a b", want: true},
		{name: "malformed", mountinfo: "garbage\n", dir: "/var/lib/lxcfs", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hasLXCFSMount(strings.NewReader(tc.mountinfo), tc.dir)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFindLXCFS runs FindLXCFS on a fixture /proc whose mount table names a
// directory holding some of the files.
func TestFindLXCFS(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	lx := filepath.Join(dir, "lx")
	for _, f := range []string{"proc/meminfo", "proc/uptime", "sys/devices/system/cpu/online"} {
		p := filepath.Join(lx, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(lx, "proc/stat"), 0o755); err != nil { // a directory is not a file LXCFS serves
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(mountinfo string) {
		if err := os.WriteFile(filepath.Join(proc, "self/mountinfo"), []byte(mountinfo), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
	l, err := FindLXCFS(proc, lx+"/")
	if err != nil {
		t.Fatal(err)
	}
	if l.Present() || l.Dir != lx || !strings.Contains(l.Missing, "no fuse.lxcfs mount at "+lx) {
		t.Errorf("without a mount: %+v", l)
	}

	write("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n64 22 0:41 / " + lx + " rw - fuse.lxcfs lxcfs rw\n")
	if l, err = FindLXCFS(proc, lx); err != nil {
		t.Fatal(err)
	}
	want := []string{"/proc/meminfo", "/proc/uptime", "/sys/devices/system/cpu/online"}
	if !slices.Equal(l.Files, want) {
		t.Errorf("files %v, want %v", l.Files, want)
	}
	for _, s := range []string{"/proc/cpuinfo", "/proc/stat (not a regular file)", "no such file"} {
		if !strings.Contains(l.Missing, s) {
			t.Errorf("Missing %q does not name %q", l.Missing, s)
		}
	}
}

func TestWantsLXCFS(t *testing.T) {
	cfg := func(ann map[string]string) []byte {
		return mustJSON(t, &specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"sh"}}, Annotations: ann})
	}
	cases := []struct {
		name string
		mod  Modifier
		cfg  []byte
		want bool
	}{
		{"enabled, default auto", Modifier{}, cfg(map[string]string{AnnotationEnable: "true"}), true},
		{"enabled by default", Modifier{DefaultEnabled: true}, cfg(nil), true},
		{"not enabled", Modifier{}, cfg(nil), false},
		{"lxcfs=false", Modifier{}, cfg(map[string]string{AnnotationEnable: "true", AnnotationLXCFS: "false"}), false},
		{"bad value: ModifyConfig reports it", Modifier{}, cfg(map[string]string{AnnotationEnable: "true", AnnotationLXCFS: "x"}), true},
		{"not JSON", Modifier{}, []byte("{"), true},
	}
	for _, tc := range cases {
		if got := tc.mod.WantsLXCFS(tc.cfg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseLXCFSCmdline(t *testing.T) {
	for _, tc := range []struct {
		argv         []string
		match        bool
		loadavg, cfs bool
	}{
		{[]string{"/usr/bin/lxcfs", "/var/lib/lxcfs"}, true, false, false},                               // Debian's unit
		{[]string{"lxcfs", "-f", "-l", "--enable-cfs", "/var/lib/lxcfs"}, true, true, true},              // the documented flags
		{[]string{"lxcfs", "-fl", "--enable-cfs", "/var/lib/lxcfs/"}, true, true, true},                  // short cluster
		{[]string{"lxcfs", "--enable-loadavg", "-p", "/run/x.pid", "/var/lib/lxcfs"}, true, true, false}, // -p takes a value
		{[]string{"lxcfs", "-o", "allow_other", "-l", "/var/lib/lxcfs"}, true, true, false},
		{[]string{"lxcfs", "-l", "--enable-cfs", "/other"}, false, true, true},
	} {
		d, ok := parseLXCFSCmdline(tc.argv, "/var/lib/lxcfs")
		if ok != tc.match || (ok && (d.loadavg != tc.loadavg || d.cfs != tc.cfs)) {
			t.Errorf("%q: match %v loadavg %v cfs %v, want %v %v %v", tc.argv, ok, d.loadavg, d.cfs, tc.match, tc.loadavg, tc.cfs)
		}
	}
}

func TestFindLXCFSDaemonFlags(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, comm string, argv ...string) {
		dir := filepath.Join(proc, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644)
	}
	write("10", "bash", "bash")
	write("20", "lxcfs", "/usr/bin/lxcfs", "/var/lib/lxcfs")
	if d := findLXCFSDaemon(proc, "/var/lib/lxcfs"); !d.found || d.loadavg || d.cfs {
		t.Errorf("Debian's default lxcfs: %+v, want found without flags", d)
	}
	if d := findLXCFSDaemon(proc, "/srv/lxcfs"); d.found {
		t.Errorf("an lxcfs serving another directory was taken: %+v", d)
	}
}

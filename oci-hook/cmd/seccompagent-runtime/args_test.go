package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHookRuntimeArgs(t *testing.T) {
	cases := []struct {
		name string
		argv string // split on spaces
		want invocation
		err  string
	}{
		{
			name: "containerd shim, docker runtimeArgs first",
			argv: "--seccompagent-default=enabled --seccompagent-runtime crun --root /run/containerd/runc/moby --log /run/c/log.json --log-format json --systemd-cgroup create --bundle /run/c/b --pid-file /run/c/init.pid ctr1",
			want: invocation{
				own:     map[string]string{"default": "enabled", "runtime": "crun"},
				args:    split("--root /run/containerd/runc/moby --log /run/c/log.json --log-format json --systemd-cgroup create --bundle /run/c/b --pid-file /run/c/init.pid ctr1"),
				command: "create", logFile: "/run/c/log.json", logFormat: "json", bundle: "/run/c/b", container: "ctr1",
			},
		},
		{
			name: "values that look like commands are values",
			argv: "--root create --log=run --rootless true --criu exec --cgroup-manager cgroupfs --log-level debug run -b=/b c",
			want: invocation{
				args:    split("--root create --log=run --rootless true --criu exec --cgroup-manager cgroupfs --log-level debug run -b=/b c"),
				command: "run", logFile: "run", bundle: "/b", container: "c",
			},
		},
		{
			name: "go flag single-dash forms (runc)",
			argv: "-root /r -debug run -bundle /b -console-socket /s -d c",
			want: invocation{args: split("-root /r -debug run -bundle /b -console-socket /s -d c"), command: "run", bundle: "/b", container: "c"},
		},
		{
			name: "bundle after the id, own flags among the command's",
			argv: "create --pid-file p c --seccompagent-socket=/x.sock --bundle=/b",
			want: invocation{own: map[string]string{"socket": "/x.sock"}, args: split("create --pid-file p c --bundle=/b"), command: "create", bundle: "/b", container: "c"},
		},
		{
			name: "crun -b and -f attached, config file",
			argv: "create -b/b -fother.json --preserve-fds 2 c",
			want: invocation{args: split("create -b/b -fother.json --preserve-fds 2 c"), command: "create", bundle: "/b", configFile: "other.json", container: "c"},
		},
		{
			name: "crun --config",
			argv: "run --config /etc/c.json --bundle /b c",
			want: invocation{args: split("run --config /etc/c.json --bundle /b c"), command: "run", bundle: "/b", configFile: "/etc/c.json", container: "c"},
		},
		{
			name: "no bundle: the working directory",
			argv: "--seccompagent-config=/etc/x.json run c",
			want: invocation{own: map[string]string{"config": "/etc/x.json"}, args: split("run c"), command: "run", container: "c"},
		},
		{
			name: "passthrough keeps everything but own flags",
			argv: "--seccompagent-default=enabled --root /r delete --force c",
			want: invocation{own: map[string]string{"default": "enabled"}, args: split("--root /r delete --force c"), command: "delete"},
		},
		{
			name: "exec: the container's argv is not ours",
			argv: "--seccompagent-socket=/s exec -t c echo --seccompagent-socket=/y --bundle x",
			want: invocation{own: map[string]string{"socket": "/s"}, args: split("exec -t c echo --seccompagent-socket=/y --bundle x"), command: "exec"},
		},
		{
			name: "no command",
			argv: "--seccompagent-runtime=crun --version",
			want: invocation{own: map[string]string{"runtime": "crun"}, args: split("--version")},
		},
		{
			name: "after -- nothing is parsed",
			argv: "create c -- --seccompagent-x --bundle /b",
			want: invocation{args: split("create c -- --seccompagent-x --bundle /b"), command: "create", container: "c"},
		},
		{name: "unknown own flag", argv: "--seccompagent-defualt=enabled create c", err: "unknown flag --seccompagent-defualt"},
		{name: "own flag without value", argv: "create c --seccompagent-socket", err: "--seccompagent-socket needs a value"},
		{name: "bundle without value", argv: "create c --bundle", err: "--bundle needs a value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(split(tc.argv))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.own == nil {
				tc.want.own = map[string]string{}
			}
			if !maps.Equal(got.own, tc.want.own) || !slices.Equal(got.args, tc.want.args) || got.command != tc.want.command ||
				got.logFile != tc.want.logFile || got.logFormat != tc.want.logFormat || got.bundle != tc.want.bundle ||
				got.configFile != tc.want.configFile || got.container != tc.want.container {
				t.Errorf("parseArgs(%q)\n got %+v\nwant %+v", tc.argv, *got, tc.want)
			}
		})
	}
}

func TestHookRuntimeSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "runtime.json")
	if err := os.WriteFile(file, []byte(`{"runtime": "crun", "default": "enabled", "on-missing-agent": "skip"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	lxfile := filepath.Join(dir, "lxcfs.json")
	if err := os.WriteFile(lxfile, []byte(`{"lxcfs-dir": "/srv/lxcfs"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"runtim": "crun"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		flags map[string]string
		want  settings
		err   string
	}{
		{"file, one flag over it", map[string]string{"config": file, "on-missing-agent": "fail"},
			settings{Runtime: "crun", Default: "enabled", Socket: "/run/seccompagent/seccompagent.sock", OnMissingAgent: "fail", LXCFSDir: "/var/lib/lxcfs"}, ""},
		{"lxcfs-dir from the file, flag over it", map[string]string{"config": lxfile, "lxcfs-dir": "/run/lxcfs"},
			settings{Runtime: "runc", Default: "disabled", Socket: "/run/seccompagent/seccompagent.sock", OnMissingAgent: "fail", LXCFSDir: "/run/lxcfs"}, ""},
		{"lxcfs-dir from the file", map[string]string{"config": lxfile},
			settings{Runtime: "runc", Default: "disabled", Socket: "/run/seccompagent/seccompagent.sock", OnMissingAgent: "fail", LXCFSDir: "/srv/lxcfs"}, ""},
		{"relative lxcfs-dir", map[string]string{"config": file, "lxcfs-dir": "lxcfs"}, settings{}, `--seccompagent-lxcfs-dir="lxcfs": want an absolute path`},
		{"explicit file missing", map[string]string{"config": filepath.Join(dir, "nope.json")}, settings{}, "no such file"},
		{"unknown key", map[string]string{"config": bad}, settings{}, `unknown field "runtim"`},
		{"bad default", map[string]string{"config": file, "default": "on"}, settings{}, `--seccompagent-default="on": want enabled or disabled`},
		{"bad on-missing-agent", map[string]string{"config": file, "on-missing-agent": "ignore"}, settings{}, "want fail or skip"},
		{"relative socket", map[string]string{"config": file, "socket": "a.sock"}, settings{}, "absolute"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadSettings(tc.flags)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func split(s string) []string { return strings.Fields(s) }

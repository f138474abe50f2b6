package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeRuntime records what the real runtime would see: its pid (to check the
// wrapper exec'd it rather than forked), argv and the config file.
const fakeRuntime = `#!/bin/sh
echo $$ > "$FAKE_OUT/pid"
printf '%s\n' "$0" > "$FAKE_OUT/argv0"
printf '%s\n' "$@" > "$FAKE_OUT/argv"
[ -n "$FAKE_CONFIG" ] && cp "$FAKE_CONFIG" "$FAKE_OUT/config.json"
exit 0
`

var (
	buildOnce sync.Once
	wrapper   string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if wrapper != "" {
		os.RemoveAll(filepath.Dir(wrapper))
	}
	os.Exit(code)
}

// buildWrapper builds this command once per test binary.
func buildWrapper(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		dir, err := os.MkdirTemp("", "seccompagent-runtime-test")
		if err != nil {
			buildErr = err
			return
		}
		wrapper = filepath.Join(dir, "seccompagent-runtime")
		buildOut, buildErr = exec.Command(goBin, "build", "-o", wrapper, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return wrapper
}

// TestHookRuntimeEndToEnd runs the built wrapper in front of a fake runtime
// script and checks what that runtime got: the arguments minus the wrapper's
// flags, in the same process, and a config.json with (or, when it must not
// be touched, without) the notify rules.
func TestHookRuntimeEndToEnd(t *testing.T) {
	bin := buildWrapper(t)
	// Short paths: a unix socket path has 108 bytes at most.
	tmp, err := os.MkdirTemp("", "sar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	fake := filepath.Join(tmp, "fake-runc")
	if err := os.WriteFile(fake, []byte(fakeRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The agent's view socket directory (the agent makes it): mounted
	// into intercepted containers at /run/seccompagent.
	viewDir := filepath.Join(tmp, "view")
	if err := os.Mkdir(viewDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// An agent without a view directory: no mount (runc would refuse a
	// missing source).
	if err := os.Mkdir(filepath.Join(tmp, "noview"), 0o755); err != nil {
		t.Fatal(err)
	}
	sockNoView := filepath.Join(tmp, "noview", "agent.sock")
	ln2, err := net.Listen("unix", sockNoView)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	noAgent := filepath.Join(tmp, "none.sock")
	skipSettings := filepath.Join(tmp, "skip.json")
	if err := os.WriteFile(skipSettings, []byte(`{"on-missing-agent": "skip", "runtime": "`+fake+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	emptySettings := filepath.Join(tmp, "empty.json")
	if err := os.WriteFile(emptySettings, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../../testdata/docker-default.json")
	if err != nil {
		t.Fatal(err)
	}
	denySysinfo, err := os.ReadFile("../../testdata/deny-sysinfo.json")
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"ociVersion": "1.0.2-dev", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}}`)
	badEnable := []byte(`{"ociVersion": "1.0.2-dev", "annotations": {"seccompagent.io/enable": "maybe"}, "root": {"path": "rootfs"}}`)

	// BUNDLE, LOG and PID are replaced by per-case paths.
	own := "--seccompagent-runtime=" + fake + " --seccompagent-config=" + emptySettings
	cases := []struct {
		name       string
		config     []byte
		args       string // with own flags
		passed     string // what the runtime must get
		cwdBundle  bool
		wantExit   int
		intercept  bool   // the runtime saw notify rules
		noView     bool   // intercepted, but no view directory to mount
		untouched  bool   // config.json is byte for byte the original
		stderr     string // substring; "" = empty stderr
		logLine    string // substring of the --log file; "" = no file
		notStarted bool
	}{
		{
			name:      "docker create: runtimeArgs first, enabled by process env",
			config:    docker,
			args:      own + " --seccompagent-socket=" + sock + " --root /run/x --log LOG --log-format json --systemd-cgroup create --bundle BUNDLE --pid-file PID ctr1",
			passed:    "--root /run/x --log LOG --log-format json --systemd-cgroup create --bundle BUNDLE --pid-file PID ctr1",
			intercept: true,
		},
		{
			name:   "run in the bundle directory, --bundle= absent, default enabled",
			config: plain, cwdBundle: true,
			args:      "run --seccompagent-default=enabled -d " + own + " --seccompagent-socket " + sock + " ctr2",
			passed:    "run -d ctr2",
			intercept: true,
		},
		{
			name:   "--bundle= form",
			config: plain,
			args:   own + " --seccompagent-default=enabled --seccompagent-socket=" + sock + " create --bundle=BUNDLE ctr3",
			passed: "create --bundle=BUNDLE ctr3", intercept: true,
		},
		{
			name:   "default disabled: config untouched",
			config: plain,
			args:   own + " --seccompagent-socket=" + sock + " create -b BUNDLE ctr4",
			passed: "create -b BUNDLE ctr4", untouched: true,
		},
		{
			name:   "passthrough does not read the config",
			config: []byte("not json"), cwdBundle: true,
			args:   own + " --seccompagent-default=enabled --seccompagent-socket=" + noAgent + " --root /r state ctr5",
			passed: "--root /r state ctr5", untouched: true,
		},
		{
			name:     "no agent, fail: the container does not start, the error reaches the log",
			config:   docker,
			args:     own + " --seccompagent-socket=" + noAgent + " --log LOG --log-format json create --bundle BUNDLE ctr6",
			wantExit: 1, untouched: true, notStarted: true,
			stderr:  "seccompagent socket " + noAgent + ` not reachable: is "seccompagent serve" running?`,
			logLine: `"level":"error","msg":"seccompagent-runtime: container ctr6: seccompagent socket ` + noAgent,
		},
		{
			name:   "no agent, skip from the settings file: starts without interception",
			config: docker,
			args:   "--seccompagent-config=" + skipSettings + " --seccompagent-socket=" + noAgent + " --log LOG create --bundle BUNDLE ctr7",
			passed: "--log LOG create --bundle BUNDLE ctr7", untouched: true,
			logLine: `level=warning msg="seccompagent-runtime: container ctr7 starts without interception`,
		},
		{
			name:   "the profile denies sysinfo: a warning, sched_getaffinity only",
			config: denySysinfo,
			args:   own + " --seccompagent-socket=" + sock + " create --bundle BUNDLE ctr8",
			passed: "create --bundle BUNDLE ctr8", intercept: true,
			stderr: "warning: seccompagent-runtime: container ctr8: sysinfo not trapped",
		},
		{
			name:     "invalid annotation",
			config:   badEnable,
			args:     own + " --seccompagent-socket=" + sock + " create --bundle BUNDLE ctr9",
			wantExit: 1, untouched: true, notStarted: true,
			stderr: `invalid annotation seccompagent.io/enable="maybe": want true or false`,
		},
		{
			name:   "agent without a view directory: intercepted, nothing mounted",
			config: plain,
			args:   own + " --seccompagent-default=enabled --seccompagent-socket=" + sockNoView + " create --bundle BUNDLE ctr11",
			passed: "create --bundle BUNDLE ctr11", intercept: true, noView: true,
		},
		{
			name:     "unknown own flag",
			config:   plain,
			args:     own + " --seccompagent-sockett=/x create --bundle BUNDLE ctr10",
			wantExit: 2, untouched: true, notStarted: true,
			stderr: "unknown flag --seccompagent-sockett",
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, strconv.Itoa(i))
			bundle, out := filepath.Join(dir, "bundle"), filepath.Join(dir, "out")
			for _, d := range []string{bundle, out} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			config := filepath.Join(bundle, "config.json")
			if err := os.WriteFile(config, tc.config, 0o640); err != nil {
				t.Fatal(err)
			}
			logFile := filepath.Join(dir, "log.json")
			expand := func(s string) []string {
				s = strings.NewReplacer("BUNDLE", bundle, "LOG", logFile, "PID", filepath.Join(dir, "pid")).Replace(s)
				return strings.Fields(s)
			}
			cmd := exec.Command(bin, expand(tc.args)...)
			cmd.Env = append(os.Environ(), "FAKE_OUT="+out, "FAKE_CONFIG="+config)
			if tc.cwdBundle {
				cmd.Dir = bundle
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			exit := 0
			if ee, ok := err.(*exec.ExitError); ok {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if exit != tc.wantExit {
				t.Errorf("exit %d, want %d; stderr: %s", exit, tc.wantExit, stderr.String())
			}
			if tc.stderr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
			if log, err := os.ReadFile(logFile); tc.logLine == "" && err == nil {
				t.Errorf("log file written: %s", log)
			} else if tc.logLine != "" && !bytes.Contains(log, []byte(tc.logLine)) {
				t.Errorf("log file %q, want a line with %q", log, tc.logLine)
			}

			after, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			if tc.untouched && !bytes.Equal(after, tc.config) {
				t.Errorf("config.json changed:\n%s", after)
			}
			if st, err := os.Stat(config); err != nil || st.Mode().Perm() != 0o640 {
				t.Errorf("config.json mode %v, %v; want 0640 kept", st.Mode(), err)
			}
			if ents, _ := os.ReadDir(bundle); len(ents) != 1 {
				t.Errorf("bundle holds %d files, want config.json only (no temporary files left)", len(ents))
			}

			argv, err := os.ReadFile(filepath.Join(out, "argv"))
			if tc.notStarted {
				if err == nil {
					t.Errorf("the runtime ran with %q", argv)
				}
				return
			}
			if err != nil {
				t.Fatalf("the runtime did not run: %v; stderr: %s", err, stderr.String())
			}
			if got, want := strings.Fields(string(argv)), expand(tc.passed); !slices.Equal(got, want) {
				t.Errorf("runtime argv\n got %q\nwant %q", got, want)
			}
			if pid, _ := os.ReadFile(filepath.Join(out, "pid")); strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
				t.Errorf("runtime pid %s, wrapper pid %d: want exec, not a child", pid, cmd.Process.Pid)
			}
			seen, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			wantSock, wantView := sock, viewDir
			if tc.noView {
				wantSock, wantView = sockNoView, ""
			}
			if !tc.intercept {
				wantView = ""
			}
			if got := notifyRules(t, seen); tc.intercept != (got.listener == wantSock && len(got.names) > 0) {
				t.Errorf("runtime saw listenerPath %q, notify rules for %v; want interception %v", got.listener, got.names, tc.intercept)
			} else if got.viewSource != wantView {
				t.Errorf("runtime saw %q mounted at /run/seccompagent, want %q", got.viewSource, wantView)
			}
		})
	}
}

type interception struct {
	listener   string
	names      []string
	viewSource string // mounted at /run/seccompagent
}

func notifyRules(t *testing.T, config []byte) interception {
	t.Helper()
	var c struct {
		Linux struct {
			Seccomp *struct {
				ListenerPath string `json:"listenerPath"`
				Syscalls     []struct {
					Names  []string `json:"names"`
					Action string   `json:"action"`
				} `json:"syscalls"`
			} `json:"seccomp"`
		} `json:"linux"`
		Mounts []struct {
			Destination, Source string
			Options             []string
		} `json:"mounts"`
	}
	if json.Unmarshal(config, &c) != nil || c.Linux.Seccomp == nil {
		return interception{}
	}
	got := interception{listener: c.Linux.Seccomp.ListenerPath}
	for _, m := range c.Mounts {
		if m.Destination == "/run/seccompagent" && slices.Contains(m.Options, "ro") {
			got.viewSource = m.Source
		}
	}
	for _, r := range c.Linux.Seccomp.Syscalls {
		if r.Action == "SCMP_ACT_NOTIFY" {
			got.names = append(got.names, r.Names...)
		}
	}
	return got
}

package main

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocihook "github.com/seccompagent/seccompagent/oci-hook"
)

// podman runs the runtime for cleanup with an empty PATH: the real runtime
// is still found in the system directories.
func TestFindRuntimeWithoutPATH(t *testing.T) {
	t.Setenv("PATH", "")
	path, err := findRuntime("sh")
	if err != nil || !filepath.IsAbs(path) {
		t.Fatalf("findRuntime(sh) with empty PATH = %q, %v", path, err)
	}
	if _, err := findRuntime("no-such-runtime-anywhere"); err == nil || !strings.Contains(err.Error(), "--seccompagent-runtime") {
		t.Fatalf("missing runtime: err = %v", err)
	}
}

// prepare asks for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV exactly when the
// decision (kernel and runtime, faked here) says so, and asks only for an
// intercepted container.
func TestPrepareWaitKillableRecv(t *testing.T) {
	docker, err := os.ReadFile("../../testdata/docker-default.json")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sar")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer func(f func(string) (bool, string)) { waitKillableRecv = f }(waitKillableRecv)
	for _, decided := range []bool{true, false} {
		asked := ""
		waitKillableRecv = func(rt string) (bool, string) { asked = rt; return decided, "test" }
		if err := os.WriteFile(filepath.Join(dir, "config.json"), docker, 0o644); err != nil {
			t.Fatal(err)
		}
		inv := &invocation{bundle: dir, container: "c"}
		s := settings{Socket: sock, Default: "enabled", OnMissingAgent: "fail"}
		if err := prepare(inv, s, "/usr/bin/crun", &logger{stderr: io.Discard}); err != nil {
			t.Fatal(err)
		}
		if asked != "/usr/bin/crun" {
			t.Errorf("decision asked for %q, want the real runtime", asked)
		}
		out, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		var c struct {
			Linux struct {
				Seccomp struct {
					Flags []string `json:"flags"`
				} `json:"seccomp"`
			} `json:"linux"`
		}
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(c.Linux.Seccomp.Flags, ocihook.FlagWaitKillableRecv); got != decided {
			t.Errorf("decided %v: flags %v", decided, c.Linux.Seccomp.Flags)
		}
	}
}

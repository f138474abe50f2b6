package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// injectBundle makes a bundle whose config.json is the oci-hook fixture
// (optionally edited) and returns its directory.
func injectBundle(t *testing.T, fixture string, edit func(map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "oci-hook", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if data, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runInjectTest(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = runInject(args, &o, &e)
	return o.String(), e.String(), err
}

func TestInjectBundle(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "inj")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// No view directory yet: a note says runc would refuse the mount.
	dir := injectBundle(t, "podman.json", nil)
	if _, errOut, err := runInjectTest(t, "--bundle", dir, "--socket", sock); err != nil || !strings.Contains(errOut, "view socket directory "+filepath.Join(sockDir, "view")) {
		t.Errorf("no view dir: %v, stderr %q", err, errOut)
	}
	if err := os.Mkdir(filepath.Join(sockDir, "view"), 0o755); err != nil {
		t.Fatal(err)
	}

	// No enable annotation: inject enables.
	dir = injectBundle(t, "podman.json", func(m map[string]any) {
		delete(m["annotations"].(map[string]any), "seccompagent.io/enable")
	})
	out, errOut, err := runInjectTest(t, "--bundle", dir, "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sysinfo, sched_getaffinity now answered by the agent at "+sock) || errOut != "" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	config := filepath.Join(dir, "config.json")
	first, _ := os.ReadFile(config)
	var c struct {
		Linux struct {
			Seccomp struct {
				ListenerPath string `json:"listenerPath"`
				Syscalls     []struct {
					Names  []string `json:"names"`
					Action string   `json:"action"`
				} `json:"syscalls"`
			} `json:"seccomp"`
		} `json:"linux"`
		Mounts []struct {
			Destination, Source string
		} `json:"mounts"`
	}
	if err := json.Unmarshal(first, &c); err != nil {
		t.Fatal(err)
	}
	last := c.Linux.Seccomp.Syscalls[len(c.Linux.Seccomp.Syscalls)-1]
	if c.Linux.Seccomp.ListenerPath != sock || last.Action != "SCMP_ACT_NOTIFY" || strings.Join(last.Names, ",") != "sysinfo,sched_getaffinity" {
		t.Errorf("listenerPath %q, last rule %+v", c.Linux.Seccomp.ListenerPath, last)
	}
	if m := c.Mounts[len(c.Mounts)-1]; m.Destination != "/run/seccompagent" || m.Source != filepath.Join(sockDir, "view") {
		t.Errorf("last mount %+v, want the view directory at /run/seccompagent", m)
	}
	if st, _ := os.Stat(config); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode())
	}

	// Again: nothing to do, same bytes.
	out, _, err = runInjectTest(t, "--bundle", dir, "--socket", sock)
	if second, _ := os.ReadFile(config); err != nil || !bytes.Equal(first, second) || !strings.Contains(out, "already set up") {
		t.Errorf("second inject: %v, %q, changed %v", err, out, !bytes.Equal(first, second))
	}
}

func TestInjectOptOutAndForce(t *testing.T) {
	dir := injectBundle(t, "podman.json", func(m map[string]any) {
		m["annotations"].(map[string]any)["seccompagent.io/enable"] = "false"
	})
	config := filepath.Join(dir, "config.json")
	before, _ := os.ReadFile(config)
	out, _, err := runInjectTest(t, "--bundle", dir)
	if after, _ := os.ReadFile(config); err != nil || !bytes.Equal(before, after) || !strings.Contains(out, "--force-enable") {
		t.Errorf("opted-out container: %v, %q, changed %v", err, out, !bytes.Equal(before, after))
	}
	// --force-enable, and no agent at the (default) socket: done, with a note.
	out, errOut, err := runInjectTest(t, "--bundle", dir, "--force-enable", "--socket", "/nonexistent/seccompagent.sock")
	if err != nil || !strings.Contains(out, "now answered") {
		t.Fatalf("forced: %v, %q", err, out)
	}
	if !strings.Contains(errOut, `seccompagent socket /nonexistent/seccompagent.sock not reachable: is "seccompagent serve" running?`) {
		t.Errorf("stderr %q, want the agent note", errOut)
	}
}

func TestInjectErrors(t *testing.T) {
	if _, _, err := runInjectTest(t); err == nil || !strings.Contains(err.Error(), "--bundle is required") {
		t.Errorf("no bundle: %v", err)
	}
	dir := injectBundle(t, "other-listener.json", nil)
	_, _, err := runInjectTest(t, "--bundle", dir)
	if err == nil || !strings.Contains(err.Error(), "/run/other-agent/agent.sock") || !strings.Contains(err.Error(), "/run/seccompagent/seccompagent.sock") {
		t.Errorf("other agent's listenerPath: %v", err)
	}
	dir = injectBundle(t, "deny-sysinfo.json", func(m map[string]any) {
		m["annotations"] = map[string]any{"seccompagent.io/syscalls": "sysinfo"}
	})
	out, errOut, err := runInjectTest(t, "--bundle", dir)
	if err != nil || !strings.Contains(out, "nothing trapped") || !strings.Contains(errOut, "sysinfo not trapped") {
		t.Errorf("denied: %v, %q, %q", err, out, errOut)
	}
	if _, _, err := runInjectTest(t, "--bundle", t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("missing config.json: %v", err)
	}
}

// TestInjectLXCFS: inject looks for LXCFS at --lxcfs-dir; a container that
// requires it is refused when the directory is not an LXCFS mount, and its
// config is left alone.
func TestInjectLXCFS(t *testing.T) {
	dir := injectBundle(t, "none.json", func(m map[string]any) {
		m["annotations"].(map[string]any)["seccompagent.io/lxcfs"] = "true"
	})
	before, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	notLXCFS := t.TempDir()
	_, _, err = runInjectTest(t, "--bundle", dir, "--lxcfs-dir", notLXCFS, "--socket", "/run/none.sock")
	if err == nil || !strings.Contains(err.Error(), "seccompagent.io/lxcfs") || !strings.Contains(err.Error(), "no fuse.lxcfs mount at "+notLXCFS) {
		t.Fatalf("err %v; want a refusal naming the annotation and %s", err, notLXCFS)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if !bytes.Equal(before, after) {
		t.Error("config.json changed although the container was refused")
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstall(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	for _, n := range installNames {
		if err := os.WriteFile(filepath.Join(from, n), []byte("#!/bin/sh\necho "+n+" v1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := runInstall(args, &out, &errb); err != nil {
			t.Fatalf("install %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	if out := run("--from", from, "--to", to); strings.Count(out, "installed ") != 2 {
		t.Errorf("first install said %q, want two installed lines", out)
	}
	for _, n := range installNames {
		fi, err := os.Stat(filepath.Join(to, n))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v, mode %v; want 0755", n, err, fi.Mode())
		}
	}
	if out := run("--from", from, "--to", to); strings.Count(out, "unchanged ") != 2 {
		t.Errorf("second install said %q, want two unchanged lines", out)
	}

	// Replace a binary that is executing (writing into it fails with
	// ETXTBSY): the rename must succeed and leave the running process
	// its old file.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	running := filepath.Join(to, "seccompagent-runtime")
	if err := os.WriteFile(running, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(running, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(50 * time.Millisecond)
	if out := run("--from", from, "--to", to, "seccompagent-runtime"); !strings.HasPrefix(out, "installed ") {
		t.Errorf("install over a running binary said %q", out)
	}
	got, err := os.ReadFile(running)
	if err != nil || !bytes.Contains(got, []byte("seccompagent-runtime v1")) {
		t.Errorf("after install: %q, %v", got, err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Errorf("the running old binary is gone: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(to, ".*install-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestInstallErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--to is required"},
		{[]string{"--to", t.TempDir(), "../x"}, "want a file name"},
		{[]string{"--from", t.TempDir(), "--to", t.TempDir()}, "no such file"},
	} {
		var out, errb bytes.Buffer
		err := runInstall(c.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("install %v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
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

// Package harness drives the end-to-end tests and the demo: it builds the test
// rootfs and the agent, writes OCI bundles, runs real runc and crun
// containers with private state directories, starts and stops the agent, and
// parses what busybox and the probe print inside a container.
//
// Everything here only touches what it created: its own state directories,
// the cgroups under the unique cgroupsPath of its own bundles, and the
// processes it started.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// buildTimeout bounds the rootfs and agent builds (a cold Go build cache on a
// 2-CPU machine takes a while).
const buildTimeout = 10 * time.Minute

// ModuleRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (go test runs in the package
// directory, go run in the caller's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildRootfs runs test/rootfs/build.sh to make (or refresh) the test rootfs
// in dir: static busybox with its applets, /probe, mount points, /etc/passwd.
func BuildRootfs(dir string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := runCombined(ctx, root, "sh", filepath.Join(root, "test", "rootfs", "build.sh"), dir)
	if err != nil {
		return fmt.Errorf("build rootfs: %w\n%s", err, out)
	}
	return nil
}

// BuildAgent builds ./cmd/seccompagent into dir and returns the binary's path.
func BuildAgent(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin, err := filepath.Abs(filepath.Join(dir, "seccompagent"))
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	goTool := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	} else if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		goTool = "/usr/local/go/bin/go"
	}
	out, err := runCombined(ctx, root, goTool, "build", "-o", bin, "./cmd/seccompagent")
	if err != nil {
		return "", fmt.Errorf("build agent: %w\n%s", err, out)
	}
	return bin, nil
}

// runCombined runs a command in dir and returns its combined output.
func runCombined(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return buf.String(), err
}

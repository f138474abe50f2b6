package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ViewExamplesDir is where InstallViewExamples puts the examples/view
// clients in a rootfs: view-c (static musl), view-go (static), view.py and
// View.class.
const ViewExamplesDir = "/view"

// InstallViewExamples builds the four examples/view clients into
// rootfs/view. java is the host's java command ("" skips the Java client;
// the caller decides whether that is allowed).
func InstallViewExamples(rootfs, java string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	src := filepath.Join(root, "examples", "view")
	dst := filepath.Join(rootfs, ViewExamplesDir)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if out, err := runCombined(ctx, src, "musl-gcc", "-static", "-O2", "-Wall", "-o", filepath.Join(dst, "view-c"), "view.c"); err != nil {
		return fmt.Errorf("musl-gcc view.c: %w\n%s", err, out)
	}
	// In a directory of its own: go would take view.c for cgo.
	goBuild := fmt.Sprintf("CGO_ENABLED=0 %s build -o %s view.go", GoTool(), filepath.Join(dst, "view-go"))
	if out, err := runCombined(ctx, filepath.Join(src, "go"), "sh", "-c", goBuild); err != nil {
		return fmt.Errorf("go build view.go: %w\n%s", err, out)
	}
	if err := copyFile(filepath.Join(src, "view.py"), filepath.Join(dst, "view.py"), 0o644); err != nil {
		return err
	}
	if java != "" {
		if out, err := runCombined(ctx, src, java, "-m", "jdk.compiler/com.sun.tools.javac.Main", "-d", dst, "View.java"); err != nil {
			return fmt.Errorf("compile View.java: %w\n%s", err, out)
		}
	}
	return nil
}

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func init() {
	commands["install"] = command{"copy the agent and the runtime wrapper onto a node (the image's init container)", runInstall}
}

// installNames are the binaries `install` copies by default.
var installNames = []string{"seccompagent", "seccompagent-runtime"}

// runInstall copies binaries from --from into --to, each by rename over
// the old file. The container runtime execs seccompagent-runtime at any
// moment: writing into the installed file would fail with ETXTBSY while
// one runs (open(2) for writing on an executing file) and would let a
// runtime exec a half-written file otherwise; a rename swaps the
// directory entry atomically, and running copies keep the old inode.
func runInstall(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "/usr/local/bin", "directory holding the binaries to install")
	to := fs.String("to", "", "directory to install into, e.g. the node's /usr/local/bin mounted at /host/usr/local/bin (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: seccompagent install --to DIR [--from DIR] [NAME...]  (default names: %v)\n", installNames)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("--to is required: the directory to install into")
	}
	names := fs.Args()
	if len(names) == 0 {
		names = installNames
	}
	for _, name := range names {
		if name != filepath.Base(name) || name == "." || name == ".." {
			return fmt.Errorf("%q: want a file name, not a path", name)
		}
		changed, err := installFile(filepath.Join(*from, name), filepath.Join(*to, name))
		if err != nil {
			return err
		}
		state := "unchanged"
		if changed {
			state = "installed"
		}
		if _, err := fmt.Fprintf(stdout, "%s %s\n", state, filepath.Join(*to, name)); err != nil {
			return err
		}
	}
	return nil
}

// installFile makes dst a 0755 copy of src, through a temporary file in
// dst's directory renamed over dst. It reports false when dst already had
// the same content and mode.
func installFile(src, dst string) (bool, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm() == 0o755 {
			return false, nil
		}
	}
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".install-*")
	if err != nil {
		return false, fmt.Errorf("install %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return false, fmt.Errorf("install %s: %w", dst, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

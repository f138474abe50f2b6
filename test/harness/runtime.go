package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Runtime names an OCI runtime binary the harness knows how to drive.
type Runtime string

const (
	Runc Runtime = "runc"
	Crun Runtime = "crun"
)

// Runtimes lists the runtimes every end-to-end test runs against.
var Runtimes = []Runtime{Runc, Crun}

// cleanupTimeout bounds each delete/kill issued after a run, which gets a
// fresh context so that it still happens when the run's context expired.
const cleanupTimeout = 30 * time.Second

// crunWrapper runs crun in a private mount namespace in which the (empty)
// cgroup2 mount of a hybrid host, /sys/fs/cgroup/unified, is unmounted.
// crun 1.8 refuses hybrid hosts ("cgroups in hybrid mode not supported");
// without that mount it sees plain cgroup v1 and works. Private propagation
// keeps the unmount out of the host's namespace. The same wrapper is used
// for delete and kill so crun finds the same cgroup layout it created.
const crunWrapper = `umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"`

// command returns the argv to run this runtime with its private state dir.
func (r Runtime) command(b *Bundle, args ...string) (string, []string, error) {
	bin, err := exec.LookPath(string(r))
	if err != nil {
		return "", nil, fmt.Errorf("%s not found on PATH: run `make deps`", r)
	}
	argv := append([]string{bin, "--root", b.StateDir()}, args...)
	if len(b.Wrapper) > 0 {
		argv = append(append(slices.Clone(b.Wrapper), "--seccompagent-runtime="+bin), argv[1:]...)
	}
	if r != Crun || CgroupUnified() {
		// Pure cgroup v2 (the VM tier): crun runs as it is.
		return argv[0], argv[1:], nil
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return "", nil, errors.New("unshare (util-linux) not found on PATH: run `make deps`")
	}
	wrapped := append([]string{"-m", "--propagation", "private", "sh", "-c", crunWrapper, "sh"}, argv...)
	return unshare, wrapped, nil
}

// run runs the runtime with the given arguments, stdout and stderr captured.
func (r Runtime) run(ctx context.Context, b *Bundle, args ...string) (string, string, error) {
	name, argv, err := r.command(b, args...)
	if err != nil {
		return "", "", err
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = b.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdin = nil
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A container process that outlives a killed runtime may hold the pipes:
	// do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s %v: %w (%v)", r, args, ctx.Err(), err)
		} else {
			err = fmt.Errorf("%s %v: %w", r, args, err)
		}
	}
	return stdout.String(), stderr.String(), err
}

// Run runs the bundle's process to completion as container id (`run`), with
// its stdout and stderr captured, then force-deletes the container and
// removes any cgroup the runtime left behind. err is non-nil when the
// runtime or the container's process failed.
func (r Runtime) Run(ctx context.Context, b *Bundle, id string) (stdout, stderr string, err error) {
	stdout, stderr, err = r.run(ctx, b, "run", "--bundle", b.Dir, id)
	if cerr := r.cleanup(b, id); cerr != nil && err == nil {
		err = cerr
	}
	return stdout, stderr, err
}

// cleanup force-deletes container id (ignoring "does not exist") and rmdirs
// the cgroups of b that the runtime left.
func (r Runtime) cleanup(b *Bundle, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, _, _ = r.run(ctx, b, "delete", "-f", id)
	// A process just killed may still be exiting, which keeps its cgroup
	// busy: retry rmdir briefly.
	var err error
	for i := 0; i < 20; i++ {
		if err = b.CleanupCgroups(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cleanup after %s container %s: %w", r, id, err)
}

// StartDetached creates and starts container id in the background (`run
// -d`). The bundle's process should be long-running (e.g. Args
// {"sleep", "1000"}); its stdout and stderr go to files in the bundle
// directory (see DetachedOutput). Stop it with KillDelete.
func (r Runtime) StartDetached(ctx context.Context, b *Bundle, id string) error {
	name, argv, err := r.command(b, "run", "-d", "--bundle", b.Dir, id)
	if err != nil {
		return err
	}
	outPath, errPath := b.detachedPaths(id)
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer out.Close()
	errf, err := os.Create(errPath)
	if err != nil {
		return err
	}
	defer errf.Close()
	// Files, not pipes: the container keeps its stdio after runc exits, and
	// a pipe would make Wait block until the container ends.
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = b.Dir
	cmd.Stdout = out
	cmd.Stderr = errf
	if err := cmd.Run(); err != nil {
		_, stderr := b.DetachedOutput(id)
		_ = r.cleanup(b, id)
		return fmt.Errorf("%s run -d %s: %w\n%s", r, id, err, stderr)
	}
	return nil
}

func (b *Bundle) detachedPaths(id string) (string, string) {
	return filepath.Join(b.Dir, id+".stdout"), filepath.Join(b.Dir, id+".stderr")
}

// DetachedOutput returns what a detached container (and its runtime) wrote
// so far to stdout and stderr.
func (b *Bundle) DetachedOutput(id string) (stdout, stderr string) {
	o, e := b.detachedPaths(id)
	ob, _ := os.ReadFile(o)
	eb, _ := os.ReadFile(e)
	return string(ob), string(eb)
}

// Exec runs args in the running container id (`exec`), output captured.
func (r Runtime) Exec(ctx context.Context, b *Bundle, id string, args ...string) (stdout, stderr string, err error) {
	return r.run(ctx, b, append([]string{"exec", id}, args...)...)
}

// KillDelete kills container id with SIGKILL, force-deletes it and removes
// the cgroups it left.
func (r Runtime) KillDelete(b *Bundle, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, _, _ = r.run(ctx, b, "kill", id, "KILL")
	return r.cleanup(b, id)
}

// RunRunc is Runc.Run.
func RunRunc(ctx context.Context, b *Bundle, id string) (stdout, stderr string, err error) {
	return Runc.Run(ctx, b, id)
}

// RunCrun is Crun.Run (crun runs in a private mount namespace without the
// hybrid host's cgroup2 mount, see crunWrapper).
func RunCrun(ctx context.Context, b *Bundle, id string) (stdout, stderr string, err error) {
	return Crun.Run(ctx, b, id)
}

// StartRuncDetached is Runc.StartDetached.
func StartRuncDetached(ctx context.Context, b *Bundle, id string) error {
	return Runc.StartDetached(ctx, b, id)
}

// ExecRunc is Runc.Exec.
func ExecRunc(ctx context.Context, b *Bundle, id string, args ...string) (stdout, stderr string, err error) {
	return Runc.Exec(ctx, b, id, args...)
}

// KillDelete is Runc.KillDelete.
func KillDelete(b *Bundle, id string) error {
	return Runc.KillDelete(b, id)
}

package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// BuildWrapper builds the runtime wrapper ./oci-hook/cmd/seccompagent-runtime
// into dir and returns the binary's path.
func BuildWrapper(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin, err := filepath.Abs(filepath.Join(dir, "seccompagent-runtime"))
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if out, err := runCombined(ctx, root, GoTool(), "build", "-o", bin, "./oci-hook/cmd/seccompagent-runtime"); err != nil {
		return "", fmt.Errorf("build seccompagent-runtime: %w\n%s", err, out)
	}
	return bin, nil
}

// RunThroughWrapper is Run with the runtime wrapper in front of the
// runtime, as an engine configured with seccompagent-runtime calls it:
// wrapper is the wrapper's path and its --seccompagent-* flags; the wrapper
// edits config.json and execs this runtime (--seccompagent-runtime) with
// the usual arguments. The container is force-deleted afterwards.
func (r Runtime) RunThroughWrapper(ctx context.Context, b *Bundle, id string, wrapper ...string) (stdout, stderr string, err error) {
	name, argv, err := r.command(b, "run", "--bundle", b.Dir, id)
	if err != nil {
		return "", "", err
	}
	bin, err := exec.LookPath(string(r))
	if err != nil {
		return "", "", err
	}
	full := append([]string{name}, argv...)
	i := slices.Index(full, bin)
	if i < 0 {
		return "", "", fmt.Errorf("%s not in %q", bin, full)
	}
	full = slices.Concat(full[:i], wrapper, []string{"--seccompagent-runtime=" + bin}, full[i+1:])
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = b.Dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	if err = cmd.Run(); err != nil {
		err = fmt.Errorf("%q: %w", full, err)
	}
	if cerr := r.cleanup(b, id); cerr != nil && err == nil {
		err = cerr
	}
	return o.String(), e.String(), err
}

package engines

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// The limits every test container gets: 256 MiB and half a CPU.
const (
	MemoryLimit = 256 << 20 // 268435456 bytes
	CPUQuota    = 50000     // µs per period
	CPUPeriod   = 100000
)

// Config is what every engine driver needs.
type Config struct {
	// Dir is the engine's private directory (absolute): its root, state,
	// run directories and sockets all live beneath it.
	Dir string
	// Wrapper is the seccompagent-runtime binary the engine runs instead
	// of runc.
	Wrapper string
	// AgentSocket is the agent's socket, passed to the wrapper as
	// --seccompagent-socket.
	AgentSocket string
	// CgroupParent is the absolute cgroup path under which the engine
	// makes every container's cgroup.
	CgroupParent string
}

// RunOptions describes one container.
type RunOptions struct {
	// Annotations are OCI annotations (docker 20.10 cannot set any).
	Annotations map[string]string
	// Env entries, KEY=VALUE, for the container's process.
	Env []string
	// Unconfined runs the container without the engine's seccomp profile.
	Unconfined bool
	// Args is the container's process.
	Args []string
	// OutputDir, when set, is a host directory bound read-write at
	// OutputMount in the container.
	OutputDir string
}

// OutputMount is where RunOptions.OutputDir appears in the container.
const OutputMount = "/out"

// Engine is a container engine started by the tests in private directories.
type Engine interface {
	// Name is "podman", "containerd" or "docker".
	Name() string
	// Load imports the image tarball written by WriteImage and checks that
	// the engine knows it as name afterwards.
	Load(ctx context.Context, tarball, name string) error
	// Run runs a container limited to MemoryLimit and CPUQuota/CPUPeriod
	// through the wrapper, waits for it and removes it.
	Run(ctx context.Context, image string, opts RunOptions) (stdout, stderr string, err error)
	// LeftoverRuntimeState lists the runc state directories of containers
	// that were not deleted (there should be none after Run).
	LeftoverRuntimeState() []string
	// Close stops the engine (by pid) and everything it started.
	Close() error
}

// mkdirs creates the directories (0700) and returns the first error.
func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// entries lists the names in dir (none when it does not exist).
func entries(dir string) []string {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, de := range des {
		names = append(names, filepath.Join(dir, de.Name()))
	}
	sort.Strings(names)
	return names
}

// writeScript writes an executable shell script.
func writeScript(path, body string) error {
	return os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	out := "'"
	for _, r := range s {
		if r == '\'' {
			out += `'\''`
		} else {
			out += string(r)
		}
	}
	return out + "'"
}

// check makes sure every path of cfg is absolute.
func (cfg Config) check() error {
	for name, p := range map[string]string{"Dir": cfg.Dir, "Wrapper": cfg.Wrapper, "AgentSocket": cfg.AgentSocket, "CgroupParent": cfg.CgroupParent} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("engine config %s=%q: want an absolute path", name, p)
		}
	}
	return nil
}

// annotationFlags renders annotations as "--annotation k=v" flags (podman
// and ctr spell them alike), in a stable order.
func annotationFlags(a map[string]string) []string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, "--annotation", k+"="+a[k])
	}
	return out
}

package ocihook

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/seccompagent/seccompagent/handlers/affinity"
)

// DefaultSocket is where the agent listens (`seccompagent serve`) and what
// listenerPath is set to unless the caller says otherwise.
const DefaultSocket = "/run/seccompagent/seccompagent.sock"

// Per-container switches. Annotations come first; the process environment is
// the fallback because Docker 20.10 does not pass annotations to the runtime.
const (
	AnnotationEnable   = "seccompagent.io/enable"
	AnnotationSyscalls = "seccompagent.io/syscalls"
	AnnotationCPUs     = affinity.Annotation

	EnvEnable   = "SECCOMPAGENT_ENABLE"
	EnvSyscalls = "SECCOMPAGENT_SYSCALLS"
	EnvCPUs     = "SECCOMPAGENT_CPUS"
)

// DefaultSyscalls are the calls the agent answers, in the order notify rules
// list them. seccompagent.io/syscalls may select a subset, never others: a
// notify rule for a call nobody answers would fail it with ENOSYS.
var DefaultSyscalls = []string{"sysinfo", "sched_getaffinity"}

// Settings is what one container asked for.
type Settings struct {
	// Enabled says whether to intercept at all.
	Enabled bool
	// Syscalls is the non-empty subset of DefaultSyscalls to trap, in
	// DefaultSyscalls order.
	Syscalls []string
	// CPUs is the seccompagent.io/cpus value as given (trimmed), "" when
	// the container did not set one.
	CPUs string
	// LXCFS is the seccompagent.io/lxcfs value: auto (the default), true
	// or false.
	LXCFS string
	// lxcfsSrc names where LXCFS came from, for error messages.
	lxcfsSrc string
}

// ReadSettings reads the container's switches: an annotation wins over the
// same setting in process.env, and defaultEnabled decides when neither says
// anything. Options are only validated for an enabled container, so a bad
// option never stops a container that does not use the agent.
func ReadSettings(spec *specs.Spec, defaultEnabled bool) (Settings, error) {
	return readSettings(spec, defaultEnabled, false)
}

// readSettings with force ignores the enable switch (even an invalid one).
func readSettings(spec *specs.Spec, defaultEnabled, force bool) (Settings, error) {
	s := Settings{Enabled: defaultEnabled || force, Syscalls: slices.Clone(DefaultSyscalls), LXCFS: "auto"}
	if v, src, ok := lookup(spec, AnnotationEnable, EnvEnable); ok && !force {
		switch strings.TrimSpace(v) {
		case "true":
			s.Enabled = true
		case "false":
			s.Enabled = false
		default:
			return Settings{}, fmt.Errorf("invalid %s=%q: want true or false", src, v)
		}
	}
	if !s.Enabled {
		return s, nil
	}
	if v, src, ok := lookup(spec, AnnotationSyscalls, EnvSyscalls); ok {
		calls, err := parseSyscalls(v)
		if err != nil {
			return Settings{}, fmt.Errorf("invalid %s=%q: %w", src, v, err)
		}
		s.Syscalls = calls
	}
	if v, src, ok := lookup(spec, AnnotationCPUs, EnvCPUs); ok {
		if _, err := affinity.ParsePolicy(v); err != nil {
			// ParsePolicy names the annotation; say where the value came from.
			return Settings{}, fmt.Errorf("invalid %s=%q: want quota, off or a positive integer", src, v)
		}
		s.CPUs = strings.TrimSpace(v)
	}
	if v, src, ok := lookup(spec, AnnotationLXCFS, EnvLXCFS); ok {
		mode, err := parseLXCFS(v)
		if err != nil {
			return Settings{}, fmt.Errorf("invalid %s=%q: %w", src, v, err)
		}
		s.LXCFS, s.lxcfsSrc = mode, src
	}
	return s, nil
}

// parseSyscalls reads a comma-separated subset of DefaultSyscalls and returns
// it in DefaultSyscalls order without duplicates.
func parseSyscalls(v string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !isTrappable(name) {
			return nil, fmt.Errorf("%q cannot be trapped: want a comma-separated subset of %s", name, strings.Join(DefaultSyscalls, ","))
		}
		want[name] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("empty: want a comma-separated subset of %s", strings.Join(DefaultSyscalls, ","))
	}
	var out []string
	for _, name := range DefaultSyscalls {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

func isTrappable(name string) bool {
	return slices.Contains(DefaultSyscalls, name)
}

// lookup finds a setting in the annotations, else in process.env, where the
// last KEY= entry wins (runc's init exports the entries in order). src names
// where it was found, for error messages.
func lookup(spec *specs.Spec, annotation, env string) (value, src string, ok bool) {
	if v, ok := spec.Annotations[annotation]; ok {
		return v, "annotation " + annotation, true
	}
	if spec.Process == nil {
		return "", "", false
	}
	for _, kv := range spec.Process.Env {
		if k, v, found := strings.Cut(kv, "="); found && k == env {
			value, ok = v, true
		}
	}
	return value, "env " + env, ok
}

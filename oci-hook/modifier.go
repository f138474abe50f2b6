package ocihook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Modifier turns interception on for the containers that ask for it.
type Modifier struct {
	// Socket is the agent's socket, written as listenerPath; DefaultSocket
	// when empty.
	Socket string
	// DefaultEnabled decides for containers that say nothing
	// (seccompagent.io/enable, SECCOMPAGENT_ENABLE).
	DefaultEnabled bool
	// ForceEnable intercepts even when the container says false.
	ForceEnable bool
	// ViewDir, when set, is the host directory holding the agent's view
	// socket (ViewDirFor(Socket)); it is bind-mounted read-only at
	// ContainerViewDir in every enabled container.
	ViewDir string
	// LXCFS is what the host's LXCFS serves (FindLXCFS). The zero value
	// means no LXCFS: containers asking for seccompagent.io/lxcfs=true
	// are refused.
	LXCFS LXCFS
	// WaitKillableRecv adds FlagWaitKillableRecv to linux.seccomp.flags
	// of an intercepted container. The caller decides (WaitKillableRecv
	// probes the kernel and the runtime): a runtime that does not know the
	// flag refuses to start the container.
	WaitKillableRecv bool
}

// Result says what Modify did.
type Result struct {
	// Settings is what the container asked for.
	Settings
	// Trapped lists the calls that now reach the agent. When it is not
	// empty listenerPath is set, and the runtime refuses to start the
	// container unless the agent is listening (see CheckAgent).
	Trapped []string
	// Warnings name the calls the profile did not let us trap, and why.
	Warnings []string
	// LXCFSMounts are the destinations the modifier bound from LXCFS.
	LXCFSMounts []string
	// Changed is false when the spec was left exactly as it was.
	Changed bool
}

// Modify edits spec in place. On error spec is unchanged.
//
// It goes through ModifyConfig so that both paths share one merge; callers
// holding config.json bytes should use ModifyConfig directly, which also
// keeps what specs-go cannot represent (includes/excludes, newer fields).
func (m Modifier) Modify(spec *specs.Spec) (Result, error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return Result{}, err
	}
	out, res, err := m.ModifyConfig(in)
	if err != nil || !res.Changed {
		return res, err
	}
	var next specs.Spec
	if err := json.Unmarshal(out, &next); err != nil {
		return Result{}, err
	}
	*spec = next
	return res, nil
}

// ModifyConfig applies the modifier to the bytes of a config.json. It
// returns config itself when nothing changes (so a second run gives the
// same bytes), else the document re-encoded with tab indentation and
// sorted keys; every member it does not own is kept as found.
//
// It owns linux.seccomp (merged, see addNotify), the mount at
// ContainerViewDir when ViewDir is set (added once, never replaced), the
// LXCFS bind mounts (appended where the destination is free, see
// addLXCFSMounts) and the annotations seccompagent.io/syscalls and
// seccompagent.io/cpus, which it sets to the effective values: runc and
// crun forward config annotations to the agent in the container state,
// process.env they do not.
func (m Modifier) ModifyConfig(config []byte) ([]byte, Result, error) {
	socket := m.Socket
	if socket == "" {
		socket = DefaultSocket
	}
	if !filepath.IsAbs(socket) {
		return nil, Result{}, fmt.Errorf("agent socket %q: want an absolute path", socket)
	}
	if m.ViewDir != "" && !filepath.IsAbs(m.ViewDir) {
		return nil, Result{}, fmt.Errorf("view socket directory %q: want an absolute path", m.ViewDir)
	}
	var spec specs.Spec
	if err := json.Unmarshal(config, &spec); err != nil {
		return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
	}
	settings, err := readSettings(&spec, m.DefaultEnabled, m.ForceEnable)
	if err != nil {
		return nil, Result{}, err
	}
	res := Result{Settings: settings}
	if !settings.Enabled {
		return config, res, nil
	}

	var doc map[string]json.RawMessage
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
	}
	linux := map[string]json.RawMessage{}
	if err := decodeField(doc, "linux", &linux); err != nil {
		return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
	}
	if linux == nil {
		linux = map[string]json.RawMessage{}
	}
	prof, err := parseProfile(linux["seccomp"])
	if err != nil {
		return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
	}
	if prof == nil {
		prof = newProfile()
	}
	mg, err := addNotify(prof, settings.Syscalls, socket)
	if err != nil {
		return nil, Result{}, err
	}
	res.Trapped, res.Warnings = mg.trapped, mg.warnings
	if m.WaitKillableRecv && len(mg.trapped) > 0 {
		if err := prof.addFlag(FlagWaitKillableRecv); err != nil {
			return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
		}
	}

	// Files: LXCFS's view of /proc and the CPU list, so that programs
	// reading files agree with the syscalls the agent answers.
	var mounts []json.RawMessage
	if err := decodeField(doc, "mounts", &mounts); err != nil {
		return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
	}
	mountsChanged := false
	switch {
	case settings.LXCFS == "false":
	case !m.LXCFS.Present() && settings.LXCFS == "true":
		return nil, Result{}, fmt.Errorf("%s=true but LXCFS is not available: %s (start lxcfs, or set %s=false)",
			settings.lxcfsSrc, m.LXCFS.missing(), AnnotationLXCFS)
	case m.LXCFS.Present():
		if mounts, res.LXCFSMounts, err = addLXCFSMounts(mounts, m.LXCFS); err != nil {
			return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
		}
		if mountsChanged = len(res.LXCFSMounts) > 0; mountsChanged {
			doc["mounts"] = mustEncode(mounts)
		}
	}

	ann := maps.Clone(spec.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationSyscalls] = strings.Join(settings.Syscalls, ",")
	if settings.CPUs != "" {
		ann[AnnotationCPUs] = settings.CPUs
	}
	annChanged := !maps.Equal(ann, spec.Annotations)
	mountAdded := false
	if m.ViewDir != "" {
		var mounts json.RawMessage
		if mounts, mountAdded, err = addViewMount(doc["mounts"], m.ViewDir); err != nil {
			return nil, Result{}, fmt.Errorf("parse OCI config: %w", err)
		}
		if mountAdded {
			doc["mounts"] = mounts
		}
	}
	if !prof.edited && !annChanged && !mountAdded && !mountsChanged {
		return config, res, nil
	}

	if prof.edited {
		raw, err := prof.marshal()
		if err != nil {
			return nil, Result{}, err
		}
		linux["seccomp"] = raw
		if doc["linux"], err = encode(linux); err != nil {
			return nil, Result{}, err
		}
	}
	if annChanged {
		doc["annotations"] = mustEncode(ann)
	}
	out, err := encode(doc)
	if err != nil {
		return nil, Result{}, err
	}
	res.Changed = true
	return indent(out), res, nil
}

// indent lays out a compact document the way runc spec does: tabs, with a
// final newline.
func indent(compact []byte) []byte {
	var b bytes.Buffer
	if err := json.Indent(&b, compact, "", "\t"); err != nil {
		return compact // cannot happen: encode produced it
	}
	b.WriteByte('\n')
	return b.Bytes()
}

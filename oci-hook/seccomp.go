package ocihook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// profile is linux.seccomp as found in config.json. Only what the merge
// decides on is decoded; the profile is re-emitted from fields, so members
// this package does not know survive unchanged, and so do the
// includes/excludes filters that docker and podman profile templates carry
// (specs-go has no field for them).
type profile struct {
	fields        map[string]json.RawMessage
	defaultAction specs.LinuxSeccompAction
	listenerPath  string
	rules         []*rule
	edited        bool
}

// rule is one entry of linux.seccomp.syscalls.
type rule struct {
	fields      map[string]json.RawMessage
	names       []string
	action      specs.LinuxSeccompAction
	conditional bool // it has args: it only matches some calls
	edited      bool // names changed
}

// parseProfile decodes linux.seccomp; nil when there is none.
func parseProfile(raw json.RawMessage) (*profile, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	p := &profile{}
	if err := json.Unmarshal(raw, &p.fields); err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	if err := decodeField(p.fields, "defaultAction", &p.defaultAction); err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	if err := decodeField(p.fields, "listenerPath", &p.listenerPath); err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	var rules []json.RawMessage
	if err := decodeField(p.fields, "syscalls", &rules); err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	for i, raw := range rules {
		r := &rule{}
		if err := json.Unmarshal(raw, &r.fields); err != nil {
			return nil, fmt.Errorf("linux.seccomp.syscalls[%d]: %w", i, err)
		}
		var args []json.RawMessage
		err := firstErr(
			decodeField(r.fields, "names", &r.names),
			decodeField(r.fields, "action", &r.action),
			decodeField(r.fields, "args", &args),
		)
		if err != nil {
			return nil, fmt.Errorf("linux.seccomp.syscalls[%d]: %w", i, err)
		}
		r.conditional = len(args) > 0
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// newProfile is the start of the profile for a container that had none:
// everything allowed, on the three x86 ABIs the handlers answer. addNotify
// adds the notify rule and listenerPath.
func newProfile() *profile {
	return &profile{
		fields: map[string]json.RawMessage{
			"defaultAction": mustEncode(specs.ActAllow),
			"architectures": mustEncode([]specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}),
		},
		defaultAction: specs.ActAllow,
		edited:        true,
	}
}

// marshal re-emits the profile: unchanged rules as found, edited ones with
// only their names replaced, then the new notify rules (already in rules).
func (p *profile) marshal() (json.RawMessage, error) {
	if !p.edited {
		return encode(p.fields)
	}
	rules := make([]json.RawMessage, 0, len(p.rules))
	for _, r := range p.rules {
		if r.edited {
			r.fields["names"] = mustEncode(r.names)
		}
		raw, err := encode(r.fields)
		if err != nil {
			return nil, err
		}
		rules = append(rules, raw)
	}
	p.fields["syscalls"] = mustEncode(rules)
	p.fields["listenerPath"] = mustEncode(p.listenerPath)
	return encode(p.fields)
}

// merged is what addNotify did.
type merged struct {
	trapped  []string // calls that now go to the agent (new or already there)
	warnings []string // calls left to the profile, and why
}

// addNotify traps calls (a subset of DefaultSyscalls) through the agent at
// socket without weakening p: defaultAction, defaultErrnoRet,
// architectures, flags and every rule that does not allow a trapped call are
// left alone. Per call S:
//
//   - a notify rule already names S: nothing to do (a second run);
//   - any other non-allow rule names S (errno, kill, trap, trace, …), or
//     defaultAction is not an allow and no allow rule names S: the profile
//     wins, S is not trapped and a warning says why;
//   - defaultAction allows: S leaves every allow rule and one unconditional
//     notify rule takes it (allow rules for S added nothing to the default);
//   - otherwise S leaves every allow (SCMP_ACT_ALLOW, SCMP_ACT_LOG) rule
//     naming it, and a notify rule with that rule's args, includes and
//     excludes takes it: calls the profile denied stay denied, and a rule
//     for another arch or capability set stays one.
//
// Rules left without names are dropped. A listenerPath other than socket
// belongs to another agent: that is an error, never replaced.
func addNotify(p *profile, calls []string, socket string) (merged, error) {
	var m merged
	if p.listenerPath != "" && p.listenerPath != socket {
		return m, fmt.Errorf("the seccomp profile already sends notifications to %s (another seccomp agent?); "+
			"seccompagent would need listenerPath %s and a profile has only one: remove one of them", p.listenerPath, socket)
	}
	var groups []*notifyGroup
	group := func(from *rule) *notifyGroup {
		g := &notifyGroup{}
		if from != nil {
			g.args, g.includes, g.excludes = from.fields["args"], from.fields["includes"], from.fields["excludes"]
		}
		for _, o := range groups {
			if o.sameFilter(g) {
				return o
			}
		}
		groups = append(groups, g)
		return g
	}
	for _, call := range calls {
		if !isTrappable(call) {
			// Guarded by parseSyscalls; a notify rule for a call nobody
			// answers (or for write(2), which the agent itself needs)
			// would break the container.
			return m, fmt.Errorf("refusing to trap %q: only %v are answered", call, DefaultSyscalls)
		}
		var allows []*rule
		notified, denied := false, ""
		for i, r := range p.rules {
			if !slices.Contains(r.names, call) {
				continue
			}
			switch {
			case r.action == specs.ActNotify:
				notified = true
			case isAllow(r.action):
				allows = append(allows, r)
			case denied == "":
				denied = fmt.Sprintf("rule %d (%s)", i, r.action)
			}
		}
		switch {
		case notified:
			m.trapped = append(m.trapped, call)
			continue
		case denied != "":
			m.warnings = append(m.warnings, fmt.Sprintf("%s not trapped: the seccomp profile's %s names it, and the profile wins", call, denied))
			continue
		case !isAllow(p.defaultAction) && len(allows) == 0:
			m.warnings = append(m.warnings, fmt.Sprintf("%s not trapped: the seccomp profile's defaultAction is %s and no allow rule names it, and the profile wins", call, p.defaultAction))
			continue
		}
		for _, r := range allows {
			r.names = slices.DeleteFunc(r.names, func(n string) bool { return n == call })
			r.edited = true
			if !isAllow(p.defaultAction) {
				group(r).add(call)
			}
		}
		if isAllow(p.defaultAction) {
			group(nil).add(call)
		}
		m.trapped = append(m.trapped, call)
		p.edited = true
	}
	if len(m.trapped) > 0 && p.listenerPath != socket {
		p.listenerPath = socket
		p.edited = true
	}
	if !p.edited {
		return m, nil
	}
	p.rules = slices.DeleteFunc(p.rules, func(r *rule) bool { return r.edited && len(r.names) == 0 })
	for _, g := range groups {
		p.rules = append(p.rules, g.rule())
	}
	return m, nil
}

// addFlag adds flag to linux.seccomp.flags, keeping the flags there (and
// their order); a flag already there changes nothing.
func (p *profile) addFlag(flag string) error {
	var flags []specs.LinuxSeccompFlag
	if err := decodeField(p.fields, "flags", &flags); err != nil {
		return fmt.Errorf("linux.seccomp: %w", err)
	}
	if slices.Contains(flags, specs.LinuxSeccompFlag(flag)) {
		return nil
	}
	p.fields["flags"] = mustEncode(append(flags, specs.LinuxSeccompFlag(flag)))
	p.edited = true
	return nil
}

func isAllow(a specs.LinuxSeccompAction) bool {
	return a == specs.ActAllow || a == specs.ActLog
}

// notifyGroup collects the calls that get one notify rule with the same
// args, includes and excludes (kept as found).
type notifyGroup struct {
	names                    []string
	args, includes, excludes json.RawMessage
}

func (g *notifyGroup) add(call string) {
	if !slices.Contains(g.names, call) {
		g.names = append(g.names, call)
	}
}

func (g *notifyGroup) sameFilter(o *notifyGroup) bool {
	return sameJSON(g.args, o.args) && sameJSON(g.includes, o.includes) && sameJSON(g.excludes, o.excludes)
}

func (g *notifyGroup) rule() *rule {
	r := &rule{
		fields: map[string]json.RawMessage{
			"names":  mustEncode(g.names),
			"action": mustEncode(specs.ActNotify),
		},
		names:       g.names,
		action:      specs.ActNotify,
		conditional: len(g.args) > 0 && string(g.args) != "null",
	}
	for k, v := range map[string]json.RawMessage{"args": g.args, "includes": g.includes, "excludes": g.excludes} {
		if v != nil {
			r.fields[k] = v
		}
	}
	return r
}

func sameJSON(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// decodeField decodes fields[key] into v when present and not null.
func decodeField(fields map[string]json.RawMessage, key string, v any) error {
	raw, ok := fields[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// encode is json.Marshal without HTML escaping (config.json holds shell
// commands: keep "&&" readable), compact.
func encode(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// mustEncode encodes values that cannot fail (strings, string slices, raw
// messages that were decoded from valid JSON).
func mustEncode(v any) json.RawMessage {
	raw, err := encode(v)
	if err != nil {
		panic(fmt.Sprintf("ocihook: encode %T: %v", v, err))
	}
	return raw
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

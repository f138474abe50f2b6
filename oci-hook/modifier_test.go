package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

var both = []string{"sysinfo", "sched_getaffinity"}

// TestHookFixtures runs the modifier over real-world-shaped config.json files
// (testdata/<case>.json, written for these tests in the shape podman, docker
// and hand-written bundles have) and checks the output three ways: against
// a golden file, against the merge invariants (checkMerge), and for
// idempotence, through both ModifyConfig and Modify.
func TestHookFixtures(t *testing.T) {
	cases := []struct {
		name     string
		mod      Modifier
		trapped  []string
		warnings []string // substrings, one per warning
		err      []string // substrings of the error
	}{
		// Annotation enable=true; both calls in the big allow rule of an
		// errno-by-default profile with arch/cap filtered rules.
		{name: "podman", trapped: both},
		// Docker 20.10 passes no annotations: enabled through process.env.
		{name: "docker-default", trapped: both},
		{name: "none", trapped: both},
		{name: "other-listener", err: []string{"/run/other-agent/agent.sock", DefaultSocket}},
		// Allow rules with args, includes and excludes become notify rules
		// with the same conditions.
		{name: "args-allow", trapped: both},
		{name: "deny-sysinfo", trapped: []string{"sched_getaffinity"},
			warnings: []string{"sysinfo not trapped: the seccomp profile's rule 0 (SCMP_ACT_ERRNO) names it"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := tc.mod.ModifyConfig(in)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error; want one naming %q", tc.err)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				spec := parseSpec(t, in)
				before := mustJSON(t, spec)
				if _, err := tc.mod.Modify(spec); err == nil || !bytes.Equal(mustJSON(t, spec), before) {
					t.Errorf("Modify: err %v, spec changed %v; want an error and the spec untouched", err, !bytes.Equal(mustJSON(t, spec), before))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.Enabled || !res.Changed {
				t.Errorf("enabled %v, changed %v; want both", res.Enabled, res.Changed)
			}
			if !slices.Equal(res.Trapped, tc.trapped) {
				t.Errorf("trapped %v, want %v", res.Trapped, tc.trapped)
			}
			checkWarnings(t, res.Warnings, tc.warnings)
			golden(t, tc.name, out)
			checkMerge(t, in, out, DefaultSocket, tc.trapped)

			// A second run finds nothing to do and returns the same bytes.
			again, res2, err := tc.mod.ModifyConfig(out)
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if res2.Changed || !bytes.Equal(again, out) || !slices.Equal(res2.Trapped, tc.trapped) {
				t.Errorf("second run changed %v, trapped %v; want the same bytes and trapped %v", res2.Changed, res2.Trapped, tc.trapped)
			}

			// Modify on a specs.Spec agrees with ModifyConfig on the same
			// input (specs-go has already dropped includes/excludes and
			// unknown members) and is idempotent too.
			spec := parseSpec(t, in)
			if _, err := tc.mod.Modify(spec); err != nil {
				t.Fatal(err)
			}
			viaSpecs, _, err := tc.mod.ModifyConfig(mustJSON(t, parseSpec(t, in)))
			if err != nil {
				t.Fatal(err)
			}
			got, want := mustJSON(t, spec), mustJSON(t, parseSpec(t, viaSpecs))
			if !bytes.Equal(got, want) {
				t.Errorf("Modify differs from ModifyConfig:\n got %s\nwant %s", got, want)
			}
			if res, err := tc.mod.Modify(spec); err != nil || res.Changed || !bytes.Equal(mustJSON(t, spec), got) {
				t.Errorf("second Modify: changed %v, err %v", res.Changed, err)
			}
		})
	}
}

// TestHookCases covers the decisions one at a time on small profiles.
func TestHookCases(t *testing.T) {
	const other = "/run/other.sock"
	type rules = []specs.LinuxSyscall
	allow := func(names ...string) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActAllow}
	}
	errno := func(names ...string) specs.LinuxSyscall {
		one := uint(1)
		return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: &one}
	}
	notify := func(names ...string) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActNotify}
	}
	prof := func(def specs.LinuxSeccompAction, listener string, r ...specs.LinuxSyscall) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: def, ListenerPath: listener, Syscalls: r}
	}
	pidZero := []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}

	cases := []struct {
		name     string
		ann      map[string]string
		env      []string
		mod      Modifier
		seccomp  *specs.LinuxSeccomp
		want     *specs.LinuxSeccomp // nil: unchanged
		wantAnn  map[string]string   // checked when not nil
		trapped  []string
		warnings []string
		err      []string
	}{
		{
			name: "default off, nothing said", mod: Modifier{},
			seccomp: prof(specs.ActAllow, ""),
		},
		{
			name: "default on", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActAllow, ""),
			want:    prof(specs.ActAllow, DefaultSocket, notify(both...)),
			wantAnn: map[string]string{AnnotationSyscalls: "sysinfo,sched_getaffinity"},
			trapped: both,
		},
		{
			name: "annotation false beats env true and the default", mod: Modifier{DefaultEnabled: true},
			ann: map[string]string{AnnotationEnable: "false"}, env: []string{"SECCOMPAGENT_ENABLE=true"},
			seccomp: prof(specs.ActAllow, ""),
		},
		{
			name: "env false beats the default", mod: Modifier{DefaultEnabled: true},
			env:     []string{"SECCOMPAGENT_ENABLE=true", "SECCOMPAGENT_ENABLE=false"},
			seccomp: prof(specs.ActAllow, ""),
		},
		{
			name: "force beats annotation false", mod: Modifier{ForceEnable: true},
			ann:     map[string]string{AnnotationEnable: "false"},
			seccomp: prof(specs.ActAllow, ""),
			want:    prof(specs.ActAllow, DefaultSocket, notify(both...)),
			trapped: both,
		},
		{
			name: "invalid enable annotation", ann: map[string]string{AnnotationEnable: "yes"},
			err: []string{`annotation seccompagent.io/enable="yes"`, "true or false"},
		},
		{
			name: "invalid enable env", env: []string{"SECCOMPAGENT_ENABLE=1"},
			err: []string{`env SECCOMPAGENT_ENABLE="1"`, "true or false"},
		},
		{
			name: "write is never trapped", ann: map[string]string{AnnotationEnable: "true", AnnotationSyscalls: "sysinfo,write"},
			err: []string{"seccompagent.io/syscalls", `"write" cannot be trapped`, "sysinfo,sched_getaffinity"},
		},
		{
			name: "empty syscalls", env: []string{"SECCOMPAGENT_ENABLE=true", "SECCOMPAGENT_SYSCALLS= , "},
			err: []string{"env SECCOMPAGENT_SYSCALLS", "empty"},
		},
		{
			name: "invalid cpus", ann: map[string]string{AnnotationEnable: "true"}, env: []string{"SECCOMPAGENT_CPUS=lots"},
			err: []string{`env SECCOMPAGENT_CPUS="lots"`, "quota, off or a positive integer"},
		},
		{
			name: "invalid cpus on a disabled container is not our business",
			ann:  map[string]string{AnnotationEnable: "false", AnnotationCPUs: "lots"},
		},
		{
			name: "relative socket", mod: Modifier{Socket: "agent.sock", DefaultEnabled: true},
			err: []string{`"agent.sock"`, "absolute"},
		},
		{
			name: "options from env are written back as annotations", mod: Modifier{Socket: "/run/x.sock"},
			env:     []string{"SECCOMPAGENT_ENABLE=true", "SECCOMPAGENT_CPUS= 3", "SECCOMPAGENT_SYSCALLS=sched_getaffinity"},
			seccomp: prof(specs.ActAllow, ""),
			want:    prof(specs.ActAllow, "/run/x.sock", notify("sched_getaffinity")),
			wantAnn: map[string]string{AnnotationCPUs: "3", AnnotationSyscalls: "sched_getaffinity"},
			trapped: []string{"sched_getaffinity"},
		},
		{
			name: "annotation options beat env", mod: Modifier{DefaultEnabled: true},
			ann:     map[string]string{AnnotationCPUs: "off", AnnotationSyscalls: "sysinfo, sysinfo"},
			env:     []string{"SECCOMPAGENT_CPUS=3", "SECCOMPAGENT_SYSCALLS=sched_getaffinity"},
			seccomp: prof(specs.ActAllow, ""),
			want:    prof(specs.ActAllow, DefaultSocket, notify("sysinfo")),
			wantAnn: map[string]string{AnnotationCPUs: "off", AnnotationSyscalls: "sysinfo"},
			trapped: []string{"sysinfo"},
		},
		{
			name: "SCMP_ACT_LOG default allows", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActLog, "", allow("read")),
			want:    prof(specs.ActLog, DefaultSocket, allow("read"), notify(both...)),
			trapped: both,
		},
		{
			name: "default allow: allow rules for the calls go, even conditional ones", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActAllow, "", allow("sysinfo", "read"),
				specs.LinuxSyscall{Names: []string{"sched_getaffinity"}, Action: specs.ActAllow, Args: pidZero}),
			want:    prof(specs.ActAllow, DefaultSocket, allow("read"), notify(both...)),
			trapped: both,
		},
		{
			name: "errno default without an allow rule: the profile wins", mod: Modifier{DefaultEnabled: true},
			seccomp:  prof(specs.ActErrno, "", allow("read", "sysinfo")),
			want:     prof(specs.ActErrno, DefaultSocket, allow("read"), notify("sysinfo")),
			trapped:  []string{"sysinfo"},
			warnings: []string{"sched_getaffinity not trapped: the seccomp profile's defaultAction is SCMP_ACT_ERRNO and no allow rule names it"},
		},
		{
			name: "a kill rule wins over an allow rule", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActErrno, "", allow("sysinfo", "sched_getaffinity"),
				specs.LinuxSyscall{Names: []string{"sched_getaffinity"}, Action: specs.ActKillThread}),
			want: prof(specs.ActErrno, DefaultSocket, allow("sched_getaffinity"),
				specs.LinuxSyscall{Names: []string{"sched_getaffinity"}, Action: specs.ActKillThread}, notify("sysinfo")),
			trapped:  []string{"sysinfo"},
			warnings: []string{"sched_getaffinity not trapped: the seccomp profile's rule 1 (SCMP_ACT_KILL_THREAD) names it"},
		},
		{
			name: "everything denied: no listenerPath, no agent needed", mod: Modifier{DefaultEnabled: true},
			seccomp:  prof(specs.ActErrno, "", errno("sysinfo"), allow("read")),
			want:     nil,
			trapped:  nil,
			warnings: []string{"sysinfo not trapped", "sched_getaffinity not trapped"},
		},
		{
			name: "other agent's listenerPath", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActAllow, other, notify("mount")),
			err:     []string{other, DefaultSocket},
		},
		{
			name: "our listenerPath already there, calls still to add", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActAllow, DefaultSocket, notify("sysinfo")),
			want:    prof(specs.ActAllow, DefaultSocket, notify("sysinfo"), notify("sched_getaffinity")),
			trapped: both,
		},
		{
			name: "notify rules without listenerPath get ours", mod: Modifier{DefaultEnabled: true},
			seccomp: prof(specs.ActErrno, "", notify(both...)),
			want:    prof(specs.ActErrno, DefaultSocket, notify(both...)),
			trapped: both,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{
				Version:     specs.Version,
				Annotations: tc.ann,
				Process:     &specs.Process{Args: []string{"sh"}, Env: append([]string{"PATH=/bin"}, tc.env...)},
				Linux:       &specs.Linux{Seccomp: tc.seccomp},
			}
			before := mustJSON(t, spec)
			res, err := tc.mod.Modify(spec)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error; want one naming %q", tc.err)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				if !bytes.Equal(mustJSON(t, spec), before) {
					t.Errorf("spec changed on error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Trapped, tc.trapped) {
				t.Errorf("trapped %v, want %v", res.Trapped, tc.trapped)
			}
			checkWarnings(t, res.Warnings, tc.warnings)
			want := tc.want
			if want == nil {
				want = tc.seccomp
			}
			if got := mustJSON(t, spec.Linux.Seccomp); !bytes.Equal(got, mustJSON(t, want)) {
				t.Errorf("seccomp\n got %s\nwant %s", got, mustJSON(t, want))
			}
			for k, v := range tc.wantAnn {
				if spec.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, spec.Annotations[k], v)
				}
			}
			if !res.Enabled && !bytes.Equal(mustJSON(t, spec), before) {
				t.Errorf("disabled, but the spec changed")
			}
		})
	}
}

// TestHookPreservesUnknown: members specs-go does not know, HTML-ish
// characters and big argument values survive ModifyConfig as they were.
func TestHookPreservesUnknown(t *testing.T) {
	in := []byte(`{"ociVersion":"1.2.0","x-future":{"a":[1,2]},
	"process":{"args":["sh","-c","a && b <x>"],"env":["SECCOMPAGENT_ENABLE=true"],"cwd":"/","futureProcess":true},
	"linux":{"futureLinux":"y","seccomp":{"defaultAction":"SCMP_ACT_ERRNO","futureSeccomp":7,
	"syscalls":[{"names":["read","sysinfo","sched_getaffinity"],"action":"SCMP_ACT_ALLOW","comment":"kept"},
	{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}}}`)
	out, res, err := Modifier{}.ModifyConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Trapped, both) {
		t.Fatalf("trapped %v", res.Trapped)
	}
	for _, s := range []string{`"x-future"`, `"futureProcess": true`, `"futureLinux": "y"`, `"futureSeccomp": 7`,
		`"comment": "kept"`, `"a && b <x>"`, `18446744073709551615`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lost %s:\n%s", s, out)
		}
	}
	checkMerge(t, in, out, DefaultSocket, both)
}

func TestHookCheckAgent(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	err := CheckAgent(sock)
	want := `seccompagent socket ` + sock + ` not reachable: is "seccompagent serve" running?`
	if err == nil || err.Error() != want {
		t.Fatalf("no agent: %v; want %q", err, want)
	}
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Err == nil {
		t.Errorf("error %T does not carry the dial error", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := CheckAgent(sock); err != nil {
		t.Errorf("agent listening: %v", err)
	}
}

func checkWarnings(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("warnings %q, want %d like %q", got, len(want), want)
		return
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("warning %q, want it to contain %q", got[i], want[i])
		}
	}
}

func golden(t *testing.T, name string, out []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output differs from %s (go test -update rewrites it after review):\n%s", path, out)
	}
}

func parseSpec(t *testing.T, b []byte) *specs.Spec {
	t.Helper()
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkMerge checks out against in by the rules, independently of how
// addNotify computes it:
//   - everything outside linux.seccomp and annotations is unchanged, and
//     annotations only gained or changed seccompagent.io/ keys;
//   - every seccomp member but syscalls and listenerPath is unchanged (a new
//     profile is allow-by-default on the x86 ABIs);
//   - the rules are in's rules, in order, with the trapped calls removed from
//     allow rules (rules left empty dropped) and every other rule identical,
//     followed by notify rules only;
//   - the notify rules name exactly the trapped calls, each with the args,
//     includes and excludes of an allow rule it came from (none when the
//     default allows), one for every such allow rule.
func checkMerge(t *testing.T, in, out []byte, socket string, trapped []string) {
	t.Helper()
	a, b := decodeAny(t, in), decodeAny(t, out)
	la, _ := a["linux"].(map[string]any)
	lb, _ := b["linux"].(map[string]any)
	var sa map[string]any
	if la != nil {
		sa, _ = la["seccomp"].(map[string]any)
	}
	sb, _ := lb["seccomp"].(map[string]any)
	if sb == nil {
		t.Fatalf("no linux.seccomp in the output")
	}
	if sa == nil {
		sa = map[string]any{"defaultAction": "SCMP_ACT_ALLOW", "architectures": []any{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}}
	}
	annA, _ := a["annotations"].(map[string]any)
	annB, _ := b["annotations"].(map[string]any)
	for k, v := range annA {
		if !strings.HasPrefix(k, "seccompagent.io/") && !reflect.DeepEqual(annB[k], v) {
			t.Errorf("annotation %s changed: %v -> %v", k, v, annB[k])
		}
	}
	for k := range annB {
		if _, ok := annA[k]; !ok && !strings.HasPrefix(k, "seccompagent.io/") {
			t.Errorf("annotation %s appeared", k)
		}
	}
	ra, rb := strip(a, "annotations", "linux"), strip(b, "annotations", "linux")
	if !reflect.DeepEqual(ra, rb) {
		t.Errorf("members outside linux changed")
	}
	if la != nil && !reflect.DeepEqual(strip(la, "seccomp"), strip(lb, "seccomp")) {
		t.Errorf("linux members other than seccomp changed")
	}
	if !reflect.DeepEqual(strip(sa, "syscalls", "listenerPath"), strip(sb, "syscalls", "listenerPath")) {
		t.Errorf("seccomp members changed:\n in %v\nout %v", strip(sa, "syscalls", "listenerPath"), strip(sb, "syscalls", "listenerPath"))
	}
	if sb["defaultAction"] == "SCMP_ACT_NOTIFY" {
		t.Errorf("defaultAction is notify")
	}
	if len(trapped) > 0 && sb["listenerPath"] != socket {
		t.Errorf("listenerPath %v, want %s", sb["listenerPath"], socket)
	}

	isTrapped := func(n any) bool { return slices.Contains(trapped, n.(string)) }
	allowsByDefault := sa["defaultAction"] == "SCMP_ACT_ALLOW" || sa["defaultAction"] == "SCMP_ACT_LOG"
	type source struct{ args, includes, excludes any }
	expect := []any{}
	sources := map[string][]source{}
	for _, r := range list(sa["syscalls"]) {
		rule := r.(map[string]any)
		act := rule["action"]
		if act != "SCMP_ACT_ALLOW" && act != "SCMP_ACT_LOG" {
			expect = append(expect, rule)
			continue
		}
		names := list(rule["names"])
		kept := slices.DeleteFunc(slices.Clone(names), isTrapped)
		for _, n := range names {
			if isTrapped(n) && !allowsByDefault {
				sources[n.(string)] = append(sources[n.(string)], source{rule["args"], rule["includes"], rule["excludes"]})
			}
		}
		if len(kept) == 0 && len(names) > 0 {
			continue
		}
		c := strip(rule)
		c["names"] = kept
		expect = append(expect, c)
	}
	got := list(sb["syscalls"])
	if len(got) < len(expect) || !reflect.DeepEqual(got[:len(expect)], expect) {
		t.Fatalf("rules other than the new notify rules differ:\n got %v\nwant %v", got, expect)
	}
	seen := map[string][]source{}
	for _, r := range got[len(expect):] {
		rule := r.(map[string]any)
		if rule["action"] != "SCMP_ACT_NOTIFY" {
			t.Errorf("added rule %v is not a notify rule", rule)
		}
		for _, n := range list(rule["names"]) {
			if !isTrapped(n) {
				t.Errorf("notify rule for %v, which is not to be trapped", n)
			}
			seen[n.(string)] = append(seen[n.(string)], source{rule["args"], rule["includes"], rule["excludes"]})
		}
	}
	for _, s := range trapped {
		want := sources[s]
		if allowsByDefault {
			want = []source{{}}
		}
		if !reflect.DeepEqual(seen[s], want) {
			t.Errorf("notify rules for %s: %v, want %v", s, seen[s], want)
		}
	}
	for s := range seen {
		if !slices.Contains(trapped, s) {
			t.Errorf("%s has a notify rule, want none", s)
		}
	}
}

func decodeAny(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func strip(m map[string]any, keys ...string) map[string]any {
	c := map[string]any{}
	for k, v := range m {
		if !slices.Contains(keys, k) {
			c[k] = v
		}
	}
	return c
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestHookWaitKillableRecv: the flag is merged into linux.seccomp.flags
// (kept flags, kept order, added once) when the caller decided so and a call
// is trapped, and nothing else changes.
func TestHookWaitKillableRecv(t *testing.T) {
	base := func(seccomp string) []byte {
		return []byte(`{"ociVersion":"1.0.2","annotations":{"seccompagent.io/enable":"true"},"process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"seccomp":` + seccomp + `}}`)
	}
	flagsOf := func(t *testing.T, out []byte) []specs.LinuxSeccompFlag {
		t.Helper()
		spec := parseSpec(t, out)
		if spec.Linux == nil || spec.Linux.Seccomp == nil {
			t.Fatal("no linux.seccomp")
		}
		return spec.Linux.Seccomp.Flags
	}
	const allow = `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"]`
	cases := []struct {
		name    string
		in      []byte
		decided bool
		want    []specs.LinuxSeccompFlag
	}{
		{"added to none", base(allow + `}`), true, []specs.LinuxSeccompFlag{FlagWaitKillableRecv}},
		{"merged after the profile's own", base(allow + `,"flags":["SECCOMP_FILTER_FLAG_LOG"]}`), true,
			[]specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG", FlagWaitKillableRecv}},
		{"already there", base(allow + `,"flags":["` + FlagWaitKillableRecv + `","SECCOMP_FILTER_FLAG_LOG"]}`), true,
			[]specs.LinuxSeccompFlag{FlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_LOG"}},
		{"not decided: flags untouched", base(allow + `,"flags":["SECCOMP_FILTER_FLAG_LOG"]}`), false,
			[]specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG"}},
		{"nothing trapped: no flag", base(`{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"]}`), true, nil},
		{"no profile", base(`null`), true, []specs.LinuxSeccompFlag{FlagWaitKillableRecv}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mod := Modifier{WaitKillableRecv: tc.decided}
			out, _, err := mod.ModifyConfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := flagsOf(t, out); !slices.Equal(got, tc.want) {
				t.Errorf("flags %v, want %v", got, tc.want)
			}
			again, res, err := mod.ModifyConfig(out)
			if err != nil || res.Changed || !bytes.Equal(again, out) {
				t.Errorf("second run: changed %v, err %v; want the same bytes", res.Changed, err)
			}
		})
	}
}

func TestRuntimeTakesWaitKillable(t *testing.T) {
	runc115 := []byte(`{"ociVersionMin":"1.0.0","linux":{"seccomp":{"enabled":true,"actions":["SCMP_ACT_NOTIFY"]}}}`)
	withFlag := []byte(`{"linux":{"seccomp":{"enabled":true,"supportedFlags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}}}`)
	withoutFlag := []byte(`{"linux":{"seccomp":{"enabled":true,"supportedFlags":["SECCOMP_FILTER_FLAG_TSYNC"]}}}`)
	for _, tc := range []struct {
		name              string
		features, version string
		want              bool
	}{
		{"runc 1.1.5: no supportedFlags", string(runc115), "runc version 1.1.5\ncommit: v1.1.5\nspec: 1.0.2-dev\n", false},
		{"features list the flag", string(withFlag), "runc version 1.5.0\n", true},
		{"features list others only", string(withoutFlag), "crun version 1.20\n", false},
		{"crun 1.8.1: no features command", "", "crun version 1.8.1\ncommit: f8a096be\nrundir: /run/crun\n", true},
		{"crun 1.7", "", "crun version 1.7.2\n", false},
		{"crun 2.0", "", "crun version 2.0\n", true},
		{"unknown", "", "", false},
	} {
		if got, why := runtimeTakesWaitKillable([]byte(tc.features), []byte(tc.version)); got != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, got, why, tc.want)
		}
	}
}

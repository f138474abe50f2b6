package ocihook

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestViewDirFor(t *testing.T) {
	if got := ViewDirFor(DefaultSocket); got != "/run/seccompagent/view" {
		t.Errorf("ViewDirFor(%s) = %s", DefaultSocket, got)
	}
	if got := ViewSocketFor("/tmp/x/agent.sock"); got != "/tmp/x/view/view.sock" {
		t.Errorf("ViewSocketFor = %s", got)
	}
}

// TestViewMount: an enabled container gets the view directory read-only at
// /run/seccompagent, once; a disabled one, one that mounts something there
// itself, or a modifier without ViewDir leaves mounts alone.
func TestViewMount(t *testing.T) {
	own := specs.Mount{Destination: "/run/seccompagent/", Type: "tmpfs", Source: "tmpfs"}
	tmp := specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"}
	want := specs.Mount{Destination: "/run/seccompagent", Type: "bind", Source: "/run/seccompagent/view",
		Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}
	cases := []struct {
		name    string
		mod     Modifier
		enable  string
		mounts  []specs.Mount
		want    []specs.Mount
		changed bool
	}{
		{"added after the others", Modifier{ViewDir: "/run/seccompagent/view"}, "true", []specs.Mount{tmp}, []specs.Mount{tmp, want}, true},
		{"no mounts yet", Modifier{ViewDir: "/run/seccompagent/view"}, "true", nil, []specs.Mount{want}, true},
		{"container's own mount wins", Modifier{ViewDir: "/run/seccompagent/view"}, "true", []specs.Mount{own}, []specs.Mount{own}, true},
		{"disabled container", Modifier{ViewDir: "/run/seccompagent/view"}, "false", []specs.Mount{tmp}, []specs.Mount{tmp}, false},
		{"no view dir", Modifier{}, "true", []specs.Mount{tmp}, []specs.Mount{tmp}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Version: "1.0.2-dev", Mounts: tc.mounts,
				Annotations: map[string]string{AnnotationEnable: tc.enable}}
			in, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := tc.mod.ModifyConfig(in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tc.changed {
				t.Errorf("changed = %v, want %v", res.Changed, tc.changed)
			}
			var got specs.Spec
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Mounts, tc.want) {
				t.Errorf("mounts = %+v\nwant %+v", got.Mounts, tc.want)
			}
			// Idempotent: a second run changes nothing.
			again, res2, err := tc.mod.ModifyConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if res2.Changed || string(again) != string(out) {
				t.Errorf("second run changed the config:\n%s\n->\n%s", out, again)
			}
		})
	}
	if _, _, err := (Modifier{ViewDir: "relative/view"}).ModifyConfig([]byte(`{}`)); err == nil {
		t.Error("relative ViewDir accepted")
	}
}

package harness

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestResolveUnder: links are followed inside the root, absolute targets
// included, the way /usr/bin/java -> /etc/alternatives/java ->
// /usr/lib/jvm/... resolves on a host whose files sit under /host.
func TestResolveUnder(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/jvm/j17/bin", "etc/alternatives"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/jvm/j17/bin/java"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"usr/bin/java":          "/etc/alternatives/java",
		"etc/alternatives/java": "/usr/lib/jvm/j17/bin/java",
		"lib":                   "usr/lib",
		"usr/bin/rel":           "../lib/jvm/j17/bin/java",
		"usr/bin/up":            "../../../../usr/bin/java",
		"usr/bin/loop":          "loop",
		"usr/bin/dangling":      "/nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	java := filepath.Join(root, "usr/lib/jvm/j17/bin/java")
	for _, tc := range []struct {
		path string
		want string
		err  error
	}{
		{"/usr/bin/java", java, nil},
		{"/lib/jvm/j17/bin/java", java, nil},
		{"/usr/bin/rel", java, nil},
		{"/usr/bin/up", java, nil},
		{"/usr/./bin//java", java, nil},
		{"/usr/bin", filepath.Join(root, "usr/bin"), nil},
		{"/usr/bin/loop", "", syscall.ELOOP},
		{"/usr/bin/dangling", "", os.ErrNotExist},
		{"/usr/bin/python3", "", os.ErrNotExist},
	} {
		got, err := resolveUnder(root, tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: got %q, %v; want error %v", tc.path, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

package ocihook

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHookWriteConfig: the mode survives, a symlinked config.json is
// replaced at its target, and nothing else is left in the directory.
func TestHookWriteConfig(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	if err := os.WriteFile(real, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "config.json")
	if err := os.Symlink("real.json", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfig(link, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(real)
	if err != nil || string(got) != `{"a":1}` {
		t.Errorf("target holds %q, %v", got, err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("config.json is no longer a symlink")
	}
	if st, err := os.Stat(real); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d entries in the directory, want 2", len(ents))
	}
	if err := WriteConfig(filepath.Join(dir, "missing.json"), nil); err == nil {
		t.Errorf("writing a missing file: no error")
	}
}

package limits

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStampVoidedByAWrite: a stamp over two directories stays valid until a
// file in one of them is written to (IN_MODIFY), whatever writes elsewhere;
// a directory that cannot be watched gives no stamp.
func TestStampVoidedByAWrite(t *testing.T) {
	w := watch()
	if w == nil {
		t.Skip("no inotify on this kernel")
	}
	a, b, other := t.TempDir(), t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(a, "memory.max"), filepath.Join(b, "memory.max"), filepath.Join(other, "memory.max")} {
		if err := os.WriteFile(f, []byte("max\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.stampDirs([]string{a, filepath.Join(a, "missing")}); s != nil {
		t.Fatal("a stamp over a directory that does not exist")
	}
	s := w.stampDirs([]string{a, b})
	if s == nil || !s.valid() {
		t.Fatalf("stamp %v: want a valid one", s)
	}
	if err := os.WriteFile(filepath.Join(other, "memory.max"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if !s.valid() {
		t.Fatal("a write to an unrelated directory voided the stamp")
	}
	if err := os.WriteFile(filepath.Join(b, "memory.max"), []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.valid(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stamp is still valid 5 s after a file in a stamped directory was written")
		}
	}
	if s2 := w.stampDirs([]string{a, b}); s2 == nil || !s2.valid() {
		t.Fatal("a new stamp after the write is not valid")
	}
}

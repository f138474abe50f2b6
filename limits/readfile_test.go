package limits

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seccompagent/seccompagent/test/testenv"
	"golang.org/x/sys/unix"
)

// TestReadFileKeptOpen: a cgroup file read twice comes from one fd kept
// open and shows the current value each time; once the cgroup is removed
// and made again at the same path, the new one is read, not the old fd's
// (ENODEV); a /proc/<pid> file of an exited task is never answered for the
// task that reuses nothing of it (ESRCH, then a fresh open fails too). A
// regular file is never kept.
func TestReadFileKeptOpen(t *testing.T) {
	testenv.RequireRoot(t)
	// A writable number every cgroup of the hierarchy has.
	var mount, limitFile string
	var st unix.Statfs_t
	switch {
	case unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC:
		mount, limitFile = "/sys/fs/cgroup", "cgroup.max.depth"
	case unix.Statfs("/sys/fs/cgroup/pids", &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC:
		mount, limitFile = "/sys/fs/cgroup/pids", "pids.max"
	}
	testenv.Require(t, mount != "", "neither cgroup2 at /sys/fs/cgroup nor a v1 pids hierarchy at /sys/fs/cgroup/pids")
	dir := filepath.Join(mount, fmt.Sprintf("seccompagent-readfile-test-%d", os.Getpid()))
	mk := func(limit string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(limit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer os.Remove(dir)
	path := filepath.Join(dir, limitFile)
	read := func() string {
		t.Helper()
		b, err := readFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	mk("10")
	if got := read(); got != "10" {
		t.Fatalf("first read %q, want 10", got)
	}
	f := openFiles.get(path)
	if f == nil {
		t.Fatal("cgroup file not kept open")
	}
	openFiles.release(f, false)
	if err := os.WriteFile(path, []byte("11"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "11" {
		t.Fatalf("after a write through another fd: %q, want 11", got)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	mk("12")
	if got := read(); got != "12" {
		t.Fatalf("cgroup removed and made again: %q, want the new cgroup's 12", got)
	}

	// A task's /proc file: kept while it lives, ESRCH once it is gone.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)
	if _, err := readFile(stat); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := readFile(stat); err == nil {
		t.Fatal("an exited task's /proc file still read")
	}
	if f := openFiles.get(stat); f != nil {
		openFiles.release(f, false)
		t.Fatal("an exited task's /proc file still kept open")
	}

	// A regular file could be replaced by a rename: never kept.
	reg := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(reg, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(reg); err != nil {
		t.Fatal(err)
	}
	if f := openFiles.get(reg); f != nil {
		openFiles.release(f, false)
		t.Fatal("a regular file was kept open")
	}
}

// TestOpenFilePins: readers pinning a kept file while it is taken out of
// the table never read a closed fd, and the fd is closed exactly once,
// by whoever unpins it last; a file out of the table cannot be pinned.
func TestOpenFilePins(t *testing.T) {
	for round := range 200 {
		fd, err := unix.Open("/proc/self/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := &openFile{path: fmt.Sprintf("pins-%d", round), fd: fd}
		var wg sync.WaitGroup
		var bad, reads atomic.Int32
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf [64]byte
				for f.pin() {
					if _, err := unix.Pread(f.fd, buf[:], 0); err != nil {
						bad.Add(1)
					}
					reads.Add(1)
					f.unpin()
				}
			}()
		}
		for reads.Load() < 400 {
			runtime.Gosched()
		}
		f.kill()
		wg.Wait()
		if bad.Load() != 0 {
			t.Fatalf("round %d: %d reads of a pinned fd failed", round, bad.Load())
		}
		if f.pins.Load() != -1 {
			t.Fatalf("round %d: pins %d after every reader left a killed file: not closed", round, f.pins.Load())
		}
		if f.pin() {
			t.Fatalf("round %d: a closed file was pinned", round)
		}
	}
}

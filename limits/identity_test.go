package limits

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/internal/taskcache"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// testScope stands for the container the tests' threads belong to.
const testScope = 1

// TestRecreatedCgroupIsACacheMiss: a limit written in place is served from
// the cache until it expires (here: an hour), but a cgroup removed and made
// again under the same path is a new identity and shows its own limit at
// once. On a fixture tree the new directory is made before the old one is
// removed, so the file system cannot hand it the old inode (cgroupfs never
// does: see leafIdentity).
func TestRecreatedCgroupIsACacheMiss(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("testdata/v2")); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(filepath.Join(root, "proc"), root)
	if err != nil {
		t.Fatal(err)
	}
	r.cache.ttl = time.Hour
	leaf := filepath.Join(root, "sys/fs/cgroup/noswap")
	total := func() uint64 {
		t.Helper()
		m, err := r.Memory(301)
		if err != nil {
			t.Fatal(err)
		}
		return m.Total
	}
	if got := total(); got != 1073741824 {
		t.Fatalf("total %d, want the fixture's 1 GiB", got)
	}
	if err := os.WriteFile(filepath.Join(leaf, "memory.max"), []byte("536870912\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := total(); got != 1073741824 {
		t.Fatalf("total %d after an in-place write: the cache is not in use, so this test proves nothing", got)
	}
	fresh := leaf + ".new"
	if err := os.CopyFS(fresh, os.DirFS(leaf)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "memory.max"), []byte("268435456\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(leaf); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fresh, leaf); err != nil {
		t.Fatal(err)
	}
	if got := total(); got != 268435456 {
		t.Errorf("total %d after the cgroup was made anew with memory.max 256 MiB: the old cgroup's cached limit was served", got)
	}
}

// realMemoryReader is a Reader of the host's real cgroups (root) with an
// hour's limit cache, the memory hierarchy's mount point and its limit
// file's name.
func realMemoryReader(t *testing.T) (r *Reader, mnt, limitFile string) {
	t.Helper()
	testenv.RequireRoot(t)
	r, err := NewReader("/proc", "/")
	if err != nil {
		t.Fatal(err)
	}
	r.cache.ttl = time.Hour
	if m, ok := r.v1["memory"]; ok {
		mnt, limitFile = m.Point, "memory.limit_in_bytes"
	} else if r.v2 != nil && r.v2ctrls["memory"] {
		mnt, limitFile = r.v2.Point, "memory.max"
	}
	testenv.Require(t, mnt != "", "no cgroup memory controller is mounted")
	return r, mnt, limitFile
}

// writeFile returns a helper writing v to file, failing t if it cannot.
func writeFile(t *testing.T) func(file, v string) {
	return func(file, v string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// siblingCgroups makes two cgroups a and b side by side under a parent of
// this test's on the real memory hierarchy mnt, and starts a sleep (in the
// test's own cgroup) that the test moves where it likes; all of it goes at
// the end of the test.
func siblingCgroups(t *testing.T, r *Reader, mnt, name string) (a, b string, pid int) {
	t.Helper()
	parent := filepath.Join(mnt, fmt.Sprintf("seccompagent-limits-%s-%d", name, os.Getpid()))
	a, b = filepath.Join(parent, "a"), filepath.Join(parent, "b")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "600")
	t.Cleanup(func() {
		if sleep.Process != nil {
			_ = sleep.Process.Kill()
			_ = sleep.Wait()
		}
		for _, d := range []string{a, b, parent} {
			_ = os.Remove(d) // rmdir: only what this test made
		}
	})
	if r.v2 != nil && strings.HasPrefix(parent, r.v2.Point) {
		writeFile(t)(filepath.Join(parent, "cgroup.subtree_control"), "+memory")
	}
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	return a, b, sleep.Process.Pid
}

// TestRecreatedRealCgroup does the same on the host's real memory
// hierarchy (root): a process in cgroup A limited to 64 MiB; A is removed
// and made again with 32 MiB and the process moved back in; the reader
// must say 32 MiB at once, although its cache would keep A's old limit
// for an hour.
func TestRecreatedRealCgroup(t *testing.T) {
	r, mnt, limitFile := realMemoryReader(t)
	a, b, pid := siblingCgroups(t, r, mnt, "test")
	write := writeFile(t)
	mkdir := func(dir string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(a, limitFile), strconv.Itoa(64<<20))
	write(filepath.Join(a, "cgroup.procs"), strconv.Itoa(pid))
	// Memory resolves afresh each time, its limits through the hour's
	// cache; MemoryAndPids reuses what the thread resolved to (task.go,
	// watch.go): both must see the new cgroup at once.
	limits2 := func() (cached, watched uint64) {
		t.Helper()
		m2, _, _, err := r.MemoryAndPids(pid, testScope) // first: nothing reopened the files for it
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.Memory(pid)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Limit.Limited || !m2.Limit.Limited {
			t.Fatalf("no memory limit seen for pid %d: %+v, %+v", pid, m, m2)
		}
		return m.Limit.Value, m2.Limit.Value
	}
	limit := func() uint64 {
		t.Helper()
		cached, watched := limits2()
		if cached != watched {
			t.Fatalf("MemoryAndPids says limit %d, Memory %d", watched, cached)
		}
		return cached
	}
	if got := limit(); got != 64<<20 {
		t.Fatalf("limit %d, want 64 MiB", got)
	}
	write(filepath.Join(b, "cgroup.procs"), strconv.Itoa(pid))
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	mkdir(a)
	write(filepath.Join(a, limitFile), strconv.Itoa(32<<20))
	write(filepath.Join(a, "cgroup.procs"), strconv.Itoa(pid))
	if got := limit(); got != 32<<20 {
		t.Errorf("limit %d after %s was removed and made again with 32 MiB: the old cgroup's limit was served from the cache", got, a)
	}
	// And the control: the same cgroup written in place keeps the cached
	// value for Memory (so the cache was in use above), while
	// MemoryAndPids, whose cgroups are watched, sees the write.
	write(filepath.Join(a, limitFile), strconv.Itoa(16<<20))
	if cached, _ := limits2(); cached != 32<<20 {
		t.Errorf("limit %d after an in-place write with an hour's cache: the cache was not in use, so this test proves nothing", cached)
	}
	waitWatched(t, r, pid, 16<<20)
}

// waitWatched waits until MemoryAndPids sees limit (the watcher reads the
// write's event on its own goroutine).
func waitWatched(t *testing.T, r *Reader, pid int, limit uint64) {
	t.Helper()
	if watch() == nil {
		t.Skip("no inotify: resolutions are kept for limitTTL only")
	}
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		m, _, _, err := r.MemoryAndPids(pid, testScope)
		if err != nil {
			t.Fatal(err)
		}
		if got = m.Limit.Value; got == limit {
			return
		}
	}
	t.Errorf("MemoryAndPids still says limit %d 5 s after it was written as %d in place: the watcher missed the write", got, limit)
}

// TestThreadResolutionReused: on the host's real memory hierarchy (root), a
// thread's resolution is reused while nothing is written to its cgroups
// (the same entry serves the next call, whatever the limit cache's
// lifetime) and its usage is read afresh on every call (16 MiB written to a
// tmpfs file by the process shows in the very next call); a limit written
// in place is seen as soon as the watcher has read the event.
func TestThreadResolutionReused(t *testing.T) {
	r, mnt, limitFile := realMemoryReader(t)
	cg := filepath.Join(mnt, fmt.Sprintf("seccompagent-limits-reuse-%d", os.Getpid()))
	shm := filepath.Join(t.TempDir(), "fill")
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm = fmt.Sprintf("/dev/shm/seccompagent-limits-reuse-%d", os.Getpid())
	}
	sh := exec.Command("sh", "-c", "read x; head -c 16777216 /dev/zero > "+shm+"; echo done; exec sleep 600")
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sh.Process != nil {
			_ = sh.Process.Kill()
			_ = sh.Wait()
		}
		_ = os.Remove(shm)
		_ = os.Remove(cg)
	})
	if r.v2 != nil && strings.HasPrefix(mnt, r.v2.Point) {
		if err := os.WriteFile(filepath.Join(mnt, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, limitFile), []byte(strconv.Itoa(256<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pid := sh.Process.Pid
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _, _, err := r.MemoryAndPids(pid, testScope)
	if err != nil {
		t.Fatal(err)
	}
	if before.Limit.Value != 256<<20 {
		t.Fatalf("limit %d, want 256 MiB", before.Limit.Value)
	}
	first, _ := r.memTasks.Get(taskcache.Key{Tid: pid, Scope: testScope}, time.Hour)
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		done <- line
	}()
	select {
	case line := <-done:
		if strings.TrimSpace(line) != "done" {
			t.Fatalf("the process said %q, not done", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not write its file")
	}
	after, _, _, err := r.MemoryAndPids(pid, testScope)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := r.memTasks.Get(taskcache.Key{Tid: pid, Scope: testScope}, time.Hour); first == nil || again != first {
		t.Errorf("the thread was resolved again with nothing written to its cgroups (entry %p, then %p): the resolution was not reused, so this test proves nothing", first, again)
	}
	if grew := int64(after.Usage) - int64(before.Usage); grew < 15<<20 {
		t.Errorf("usage grew by %d bytes after the process wrote 16 MiB to tmpfs: usage was not read afresh", grew)
	}
	if err := os.WriteFile(filepath.Join(cg, limitFile), []byte(strconv.Itoa(128<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitWatched(t, r, pid, 128<<20)
}

// TestRemadeCgroupCPU: a cgroup with a CPU quota of 2 is removed and made
// again at the same path with a quota of 1 (a unit restarted with a new
// CPUQuota=); a new process there, in the same container scope, must get 1
// at once, although the first resolution was stamped moments before and
// kernfs raises nothing on a removed directory's own watch.
func TestRemadeCgroupCPU(t *testing.T) {
	testenv.RequireRoot(t)
	r, err := NewReader("/proc", "/")
	if err != nil {
		t.Fatal(err)
	}
	var mnt string
	var quota func(dir string, cpus int)
	write := func(file, v string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if m, ok := r.v1["cpu"]; ok {
		mnt = m.Point
		quota = func(dir string, cpus int) {
			write(filepath.Join(dir, "cpu.cfs_period_us"), "100000")
			write(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.Itoa(cpus*100000))
		}
	} else if r.v2 != nil && r.v2ctrls["cpu"] {
		mnt = r.v2.Point
		quota = func(dir string, cpus int) {
			write(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d 100000", cpus*100000))
		}
	}
	testenv.Require(t, mnt != "", "no cgroup cpu controller is mounted")
	parent := filepath.Join(mnt, fmt.Sprintf("seccompagent-limits-remade-%d", os.Getpid()))
	cg := filepath.Join(parent, "unit")
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		_ = os.Remove(cg)
		_ = os.Remove(parent)
	})
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if r.v2 != nil && strings.HasPrefix(parent, r.v2.Point) {
		write(filepath.Join(parent, "cgroup.subtree_control"), "+cpu")
	}
	start := func() int {
		t.Helper()
		p := exec.Command("sleep", "600")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		write(filepath.Join(cg, "cgroup.procs"), strconv.Itoa(p.Process.Pid))
		return p.Process.Pid
	}
	count := func(pid int) uint64 {
		t.Helper()
		c, err := r.ThreadCPU(pid, testScope)
		if err != nil {
			t.Fatal(err)
		}
		return c.Count.Value
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	quota(cg, 2)
	first := start()
	if got := count(first); got != 2 {
		t.Fatalf("count %d, want 2", got)
	}
	p := procs[0]
	_ = p.Process.Kill()
	_ = p.Wait()
	procs = nil
	if err := os.Remove(cg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	quota(cg, 1)
	second := start()
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if got = count(second); got == 1 {
			return
		}
	}
	t.Errorf("count %d 5 s after the cgroup was made again with a quota of 1: the removed cgroup's was served", got)
}

package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LXCFSFlags are the flags the tests (and docs/lxcfs.md) run LXCFS with:
// -l keeps a per-container load average, --enable-cfs sizes the CPU views
// (cpuinfo, stat, cpu/online) by the CPU quota, like the agent's
// sched_getaffinity.
var LXCFSFlags = []string{"-l", "--enable-cfs"}

// LXCFS is a private lxcfs daemon started by StartLXCFS.
type LXCFS struct {
	// Dir is its mount point.
	Dir     string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartLXCFS runs `lxcfs -f <LXCFSFlags> -p dir/lxcfs.pid dir/mnt` in the
// foreground (so its pid is ours to stop) and waits until dir/mnt is a
// fuse.lxcfs mount serving /proc/meminfo. The mount is in the caller's
// mount namespace, under dir only.
func StartLXCFS(ctx context.Context, dir string) (*LXCFS, error) {
	bin, err := exec.LookPath("lxcfs")
	if err != nil {
		return nil, errors.New("lxcfs not found on PATH: install the lxcfs package (`make deps`)")
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	l := &LXCFS{Dir: mnt, LogPath: filepath.Join(dir, "lxcfs.log"), done: make(chan struct{})}
	logf, err := os.Create(l.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := append(append([]string{"-f"}, LXCFSFlags...), "-p", filepath.Join(dir, "lxcfs.pid"), mnt)
	l.cmd = exec.Command(bin, args...)
	l.cmd.Stdout, l.cmd.Stderr = logf, logf
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start lxcfs: %w", err)
	}
	go func() { l.waitErr = l.cmd.Wait(); close(l.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-l.done:
			return nil, fmt.Errorf("lxcfs exited: %v\n%s", l.waitErr, l.Logs())
		default:
		}
		if ok, _ := IsLXCFSMount(mnt); ok {
			if _, err := os.Stat(filepath.Join(mnt, "proc/meminfo")); err == nil {
				return l, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			l.Stop()
			return nil, fmt.Errorf("lxcfs did not mount %s within 10 s\n%s", mnt, l.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns what lxcfs printed.
func (l *LXCFS) Logs() string {
	b, _ := os.ReadFile(l.LogPath)
	return string(b)
}

// Stop sends lxcfs SIGTERM (FUSE then unmounts), waits for it (SIGKILL
// after 10 s) and lazily unmounts the mount point if it is still there.
// With -l lxcfs takes up to 5 s to exit: it joins its load-average thread,
// which sleeps between its 5 s samples.
func (l *LXCFS) Stop() error {
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
	if ok, _ := IsLXCFSMount(l.Dir); ok {
		if err := syscall.Unmount(l.Dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", l.Dir, err)
		}
	}
	return nil
}

// IsLXCFSMount reports whether dir is a fuse.lxcfs mount point in this
// process's mount namespace.
func IsLXCFSMount(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		found = strings.HasPrefix(post, "fuse.lxcfs ")
	}
	return found, sc.Err()
}

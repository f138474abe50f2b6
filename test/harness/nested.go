package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	mountpoint  string
	v2          bool
	controllers []string // v1: from the super options; v2: root cgroup.controllers
}

// hierarchies lists the cgroup hierarchies mounted in this mount namespace.
func hierarchies() ([]hierarchy, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var hs []hierarchy
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		h := hierarchy{mountpoint: unescapeMountinfo(pf[4])}
		switch qf[0] {
		case "cgroup":
			for _, opt := range strings.Split(qf[2], ",") {
				switch opt {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "noprefix", "xattr":
				default:
					if !strings.Contains(opt, "=") {
						h.controllers = append(h.controllers, opt)
					}
				}
			}
		case "cgroup2":
			h.v2 = true
			c, _ := os.ReadFile(filepath.Join(h.mountpoint, "cgroup.controllers"))
			h.controllers = strings.Fields(string(c))
		default:
			continue
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// CgroupDir returns the host directory of the cgroup cg (an absolute
// cgroup path such as a bundle's CgroupsPath) in the hierarchy that has
// controller ("memory", "cpu", "pids", ...), and whether that hierarchy is
// cgroup v2. A v1 hierarchy wins over a v2 mount without the controller
// (hybrid hosts).
func CgroupDir(controller, cg string) (dir string, v2 bool, err error) {
	hs, err := hierarchies()
	if err != nil {
		return "", false, err
	}
	for _, wantV2 := range []bool{false, true} {
		for _, h := range hs {
			if h.v2 == wantV2 && slices.Contains(h.controllers, controller) {
				return filepath.Join(h.mountpoint, cg), h.v2, nil
			}
		}
	}
	return "", false, fmt.Errorf("no mounted cgroup hierarchy has the %s controller", controller)
}

// CgroupMemoryLimit reads the memory limit the kernel enforces on cgroup
// cg itself (memory.max on v2, memory.limit_in_bytes on v1), in bytes.
func CgroupMemoryLimit(cg string) (int64, error) {
	dir, v2, err := CgroupDir("memory", cg)
	if err != nil {
		return 0, err
	}
	name := "memory.limit_in_bytes"
	if v2 {
		name = "memory.max"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// ChildCgroup is a cgroup NestChild made beneath a container's cgroup.
type ChildCgroup struct {
	// Dirs are the child's directories, one per hierarchy it was made in.
	Dirs []string
	// V2 is true on the unified hierarchy.
	V2 bool
}

// NestChild does what systemd (or any init) does inside a container: it
// creates the cgroup <cg>/<name> with the memory limit memLimit (bytes)
// and moves every process of the container's cgroup cg into it, from the
// host side. The child has no CPU limit of its own, so the container's
// quota (an ancestor now) still applies.
//
// cgroup v1: the child is made in the memory and cpu hierarchies
// (memory.limit_in_bytes). cgroup v2: a cgroup with processes cannot enable
// controllers for its children, so all processes move first, then
// "+memory" (and "+cpu" when available) goes into <cg>'s
// cgroup.subtree_control and memory.max is set on the child.
//
// Remove the child with Remove once the container's processes are gone
// (and before the runtime deletes the container).
func NestChild(cg, name string, memLimit int64) (*ChildCgroup, error) {
	memDir, v2, err := CgroupDir("memory", cg)
	if err != nil {
		return nil, err
	}
	c := &ChildCgroup{V2: v2}
	limit := strconv.FormatInt(memLimit, 10)
	if v2 {
		child := filepath.Join(memDir, name)
		if err := os.Mkdir(child, 0o755); err != nil {
			return nil, err
		}
		c.Dirs = []string{child}
		if err := moveAll(memDir, child); err != nil {
			return c, err
		}
		ctrl := []string{"+memory"}
		if avail, err := os.ReadFile(filepath.Join(memDir, "cgroup.controllers")); err == nil &&
			slices.Contains(strings.Fields(string(avail)), "cpu") {
			ctrl = append(ctrl, "+cpu")
		}
		if err := writeCgroupFile(filepath.Join(memDir, "cgroup.subtree_control"), strings.Join(ctrl, " ")); err != nil {
			return c, err
		}
		return c, writeCgroupFile(filepath.Join(child, "memory.max"), limit)
	}

	cpuDir, _, err := CgroupDir("cpu", cg)
	if err != nil {
		return nil, err
	}
	memChild := filepath.Join(memDir, name)
	if err := os.Mkdir(memChild, 0o755); err != nil {
		return nil, err
	}
	c.Dirs = append(c.Dirs, memChild)
	if err := writeCgroupFile(filepath.Join(memChild, "memory.limit_in_bytes"), limit); err != nil {
		return c, err
	}
	cpuChild := filepath.Join(cpuDir, name)
	if cpuChild != memChild {
		if err := os.Mkdir(cpuChild, 0o755); err != nil {
			return c, err
		}
		c.Dirs = append(c.Dirs, cpuChild)
	}
	// Move the processes the cpu hierarchy sees first: the memory
	// hierarchy's list is the one moveAll waits to see empty.
	if cpuChild != memChild {
		if err := moveAll(cpuDir, cpuChild); err != nil {
			return c, err
		}
	}
	if err := moveAll(memDir, memChild); err != nil {
		return c, err
	}
	if cpuChild != memChild {
		// Processes forked between the two moves: sweep the cpu side again.
		if err := moveAll(cpuDir, cpuChild); err != nil {
			return c, err
		}
	}
	return c, nil
}

// moveAll moves every process listed in from/cgroup.procs into
// to/cgroup.procs until from has none left (a process forking meanwhile
// may leave a new one behind for one more round).
func moveAll(from, to string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := CgroupProcs(from)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := writeCgroupFile(filepath.Join(to, "cgroup.procs"), strconv.Itoa(pid))
			// A process that exited meanwhile cannot move: ESRCH.
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes keep appearing in %s: %v", from, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CgroupProcs lists the pids in dir/cgroup.procs.
func CgroupProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s/cgroup.procs: %q", dir, f)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// Remove waits (up to timeout) until the child cgroups hold no process and
// removes them with rmdir. Kill the container first.
func (c *ChildCgroup) Remove(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var errs []error
	for _, dir := range c.Dirs {
		for {
			pids, err := CgroupProcs(dir)
			if err != nil || len(pids) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// writeCgroupFile writes value to a cgroup control file (no O_CREAT, no
// truncation games: one write, as the kernel expects).
func writeCgroupFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, werr)
	}
	return cerr
}

// InitPid returns the host pid of container id's init process (`state`).
func (r Runtime) InitPid(ctx context.Context, b *Bundle, id string) (int, error) {
	stdout, stderr, err := r.run(ctx, b, "state", id)
	if err != nil {
		return 0, fmt.Errorf("%w\n%s", err, stderr)
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		return 0, fmt.Errorf("%s state %s: %w: %q", r, id, err, stdout)
	}
	if st.Pid <= 0 {
		return 0, fmt.Errorf("%s state %s: no pid (status %q)", r, id, st.Status)
	}
	return st.Pid, nil
}

// Update changes the resources of the running container id (`update ARGS
// id`, e.g. "--memory", "134217728").
func (r Runtime) Update(ctx context.Context, b *Bundle, id string, args ...string) error {
	argv := append(append([]string{"update"}, args...), id)
	_, stderr, err := r.run(ctx, b, argv...)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, stderr)
	}
	return nil
}

// Kill sends signal (e.g. "KILL") to container id's init (`kill`).
func (r Runtime) Kill(ctx context.Context, b *Bundle, id, signal string) error {
	_, stderr, err := r.run(ctx, b, "kill", id, signal)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, stderr)
	}
	return nil
}

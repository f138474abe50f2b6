package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PlainCgroup is a cgroup made directly in cgroupfs, with no runtime: the
// kind of cgroup a systemd unit, systemd-run or a batch scheduler puts a
// job in.
type PlainCgroup struct {
	// Procs are the cgroup.procs files a process writes its pid to, one
	// per hierarchy (memory and cpu on v1; one on v2).
	Procs []string
	// Dirs are the directories to remove, deepest first.
	Dirs []string
}

// NewPlainCgroup creates the cgroup cg (absolute, under CgroupParent) with a
// memory limit (bytes) and a CPU quota/period (µs). On v1 it is made in the
// memory and cpu hierarchies; on v2 the memory and cpu controllers are
// enabled down to it from the root, as systemd does.
func NewPlainCgroup(cg string, mem, quota, period int64) (*PlainCgroup, error) {
	pc := &PlainCgroup{}
	memDir, v2, err := CgroupDir("memory", cg)
	if err != nil {
		return nil, err
	}
	if v2 {
		// Enable the controllers on every level from the root down to
		// cg's parent (levels without processes accept it).
		dir := strings.TrimSuffix(memDir, cg)
		if err := writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), "+memory +cpu"); err != nil {
			return pc, err
		}
		for _, part := range strings.Split(strings.Trim(filepath.Dir(cg), "/"), "/") {
			if part == "" {
				continue
			}
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return pc, err
			}
			if err := writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), "+memory +cpu"); err != nil {
				return pc, err
			}
		}
		if err := os.Mkdir(memDir, 0o755); err != nil {
			return pc, err
		}
		pc.Dirs = []string{memDir}
		pc.Procs = []string{filepath.Join(memDir, "cgroup.procs")}
		return pc, firstErr(
			writeCgroupFile(filepath.Join(memDir, "memory.max"), strconv.FormatInt(mem, 10)),
			writeCgroupFile(filepath.Join(memDir, "cpu.max"), fmt.Sprintf("%d %d", quota, period)))
	}
	cpuDir, _, err := CgroupDir("cpu", cg)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{memDir, cpuDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return pc, err
		}
		pc.Dirs = append(pc.Dirs, d)
		pc.Procs = append(pc.Procs, filepath.Join(d, "cgroup.procs"))
	}
	return pc, firstErr(
		writeCgroupFile(filepath.Join(memDir, "memory.limit_in_bytes"), strconv.FormatInt(mem, 10)),
		writeCgroupFile(filepath.Join(cpuDir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)),
		writeCgroupFile(filepath.Join(cpuDir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)))
}

// Remove rmdirs the cgroup (its processes must be gone).
func (pc *PlainCgroup) Remove() error {
	var errs []error
	for _, d := range pc.Dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return firstErr(errs...)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

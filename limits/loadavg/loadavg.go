package loadavg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// errNoProcess is what reading /proc of a task that just exited may give
// instead of ENOENT.
var errNoProcess error = syscall.ESRCH

// The kernel's fixed-point load average (kernel/sched/loadavg.c,
// include/linux/sched/loadavg.h): 11 bits of fraction, one sample every
// 5 s, decay factors 1/exp(5s/1min), 1/exp(5s/5min), 1/exp(5s/15min).
const (
	FShift = 11
	Fixed1 = 1 << FShift
	Exp1   = 1884
	Exp5   = 2014
	Exp15  = 2037

	// SILoadShift is sysinfo(2)'s scale for loads (include/uapi/linux/
	// sysinfo.h): do_sysinfo shifts avenrun left by SILoadShift-FShift.
	SILoadShift = 16
)

// Depth is how many levels below the container's cgroup count: LXCFS
// (src/proc_loadavg.c, DEPTH_DIR) reads cgroup.procs of the cgroup and of
// descendants up to three levels down, and so do we, so that both views
// count the same tasks.
const Depth = 3

// CalcLoad is one step of the kernel's calc_load: the new average of load
// after a sample of active tasks, rounding up while the load rises.
func CalcLoad(load, exp, active uint64) uint64 {
	active *= Fixed1
	newload := load*exp + active*(Fixed1-exp)
	if active >= load {
		newload += Fixed1 - 1
	}
	return newload / Fixed1
}

// Avenrun is a 1, 5 and 15 minute load average in FShift fixed point.
type Avenrun [3]uint64

// Next is the average after a sample that found active runnable or
// uninterruptible tasks.
func (a Avenrun) Next(active uint64) Avenrun {
	return Avenrun{CalcLoad(a[0], Exp1, active), CalcLoad(a[1], Exp5, active), CalcLoad(a[2], Exp15, active)}
}

// Sysinfo is the average in sysinfo(2)'s scale (get_avenrun with shift
// SI_LOAD_SHIFT - FSHIFT).
func (a Avenrun) Sysinfo() [3]uint64 {
	var out [3]uint64
	for i, v := range a {
		out[i] = v << (SILoadShift - FShift)
	}
	return out
}

// String prints the three averages the way /proc/loadavg does (and LXCFS's
// copy of it): two decimals, rounded to the nearest hundredth.
func (a Avenrun) String() string {
	var parts [3]string
	for i, v := range a {
		v += Fixed1 / 200
		parts[i] = fmt.Sprintf("%d.%02d", v>>FShift, ((v&(Fixed1-1))*100)>>FShift)
	}
	return strings.Join(parts[:], " ")
}

// ParseState returns the state letter of a /proc/<pid>/task/<tid>/stat
// line: the field after the command, which is in parentheses and may hold
// spaces and parentheses itself.
func ParseState(stat string) (byte, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+1] != ' ' {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	return stat[i+2], nil
}

// Counts is one sample of a cgroup subtree.
type Counts struct {
	// Active are the threads in state R (running or runnable) or D
	// (uninterruptible sleep): what the kernel's calc_load_fold_active
	// counts per CPU (nr_running + nr_uninterruptible). Idle kernel
	// threads show as I and do not count, as in the kernel.
	Active int
	// Threads are all threads of the processes found.
	Threads int
}

// Count samples the threads of every process in the cgroup at dir and its
// descendants down to Depth levels, reading their state from procRoot.
// Processes and threads that exit during the walk are skipped, as the
// kernel's own sample does not see them either.
func Count(procRoot, dir string) (Counts, error) {
	var c Counts
	pids, err := procs(dir, Depth)
	if err != nil {
		return c, err
	}
	for _, pid := range pids {
		taskDir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
		tids, err := os.ReadDir(taskDir)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoProcess) {
			continue
		}
		if err != nil {
			return c, err
		}
		for _, t := range tids {
			b, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "stat"))
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoProcess) {
				continue
			}
			if err != nil {
				return c, err
			}
			state, err := ParseState(string(bytes.TrimSpace(b)))
			if err != nil {
				return c, fmt.Errorf("%s: %w", filepath.Join(taskDir, t.Name(), "stat"), err)
			}
			c.Threads++
			if state == 'R' || state == 'D' {
				c.Active++
			}
		}
	}
	return c, nil
}

// procs lists the processes of the cgroup at dir and of its descendants
// down to depth levels. A child cgroup removed during the walk is skipped;
// the cgroup itself must exist.
func procs(dir string, depth int) ([]int, error) {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil || pid <= 0 {
			f.Close()
			return nil, fmt.Errorf("%s: bad pid %q", f.Name(), line)
		}
		pids = append(pids, pid)
	}
	err = sc.Err()
	f.Close()
	if err != nil {
		return nil, err
	}
	if depth == 0 {
		return pids, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub, err := procs(filepath.Join(dir, e.Name()), depth-1)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoProcess) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pids = append(pids, sub...)
	}
	return pids, nil
}

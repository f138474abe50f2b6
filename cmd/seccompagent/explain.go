package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/seccompagent/seccompagent/limits"
)

func init() {
	commands["explain"] = command{"show the view a process would get, and which cgroup file decided each number", runExplain}
}

func runExplain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "process (host pid) whose view to explain")
	asJSON := fs.Bool("json", false, "print the view as JSON (stable format, see docs/explain.md)")
	procRoot := fs.String("proc", "/proc", "procfs mount to read processes from")
	fsRoot := fs.String("root", "/", "root under which cgroup mounts and /sys are found")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pid <= 0 {
		return errors.New("--pid N is required (a host pid, e.g. from `runc state ID` or `docker inspect -f {{.State.Pid}} NAME`)")
	}
	r, err := limits.NewReader(*procRoot, *fsRoot)
	if err != nil {
		return err
	}
	v, err := r.View(*pid)
	if err != nil {
		return fmt.Errorf("pid %d: %w", *pid, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return renderExplain(stdout, v)
}

// renderExplain prints one line per number: the container's value, the
// host's, and why.
func renderExplain(w io.Writer, v *limits.View) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "pid %d\tcgroups %s\t\t\n", v.Pid, v.Mode)
	fmt.Fprintf(tw, "WHAT\tCONTAINER\tHOST\tWHY\n")

	c := v.CPU
	cpus := "all"
	why := "no limit: host value (no CPU quota at any level)"
	if c.Count.Limited {
		cpus = fmt.Sprint(c.Count.Value)
		why = fmt.Sprintf("quota %d/%d us, %s", c.QuotaUS, c.PeriodUS, decided(c.Count.Source))
	}
	fmt.Fprintf(tw, "CPUs (sched_getaffinity)\t%s\t%d\t%s\n", cpus, c.HostOnline, why)
	if c.CpusetSource != nil {
		n, _ := limits.ParseCPUList(c.Cpuset)
		cs := c.CpusetSource
		fmt.Fprintf(tw, "cpuset\t%s (%d)\t%d online\tapplied by the kernel to every mask; read from %s (level %d, cgroup %s)\n",
			c.Cpuset, len(n), c.HostOnline, cs.File, cs.Level, cs.Cgroup)
	}

	m := v.Memory
	why = "no limit: host value (no memory limit below the host's RAM)"
	if m.Limit.Limited {
		why = decided(m.Limit.Source)
	}
	fmt.Fprintf(tw, "memory total (totalram)\t%s\t%s\t%s\n", humanBytes(m.Total), humanBytes(m.HostTotal), why)
	fmt.Fprintf(tw, "memory used\t%s\t\tcgroup usage (memory.current / memory.usage_in_bytes)\n", humanBytes(m.Usage))
	free := uint64(0)
	if m.Total > m.Usage {
		free = m.Total - m.Usage
	}
	fmt.Fprintf(tw, "memory free (freeram)\t%s\t\ttotal - used\n", humanBytes(free))
	fmt.Fprintf(tw, "shared (sharedram)\t%s\t\tshmem in memory.stat\n", humanBytes(m.Shmem))
	why = "no limit: host value (no swap limit)"
	switch {
	case m.SwapLimit.Limited:
		why = decided(m.SwapLimit.Source)
	case m.SwapTotal == 0 && m.HostSwapTotal != 0:
		why = "no swap accounting in this cgroup"
	}
	fmt.Fprintf(tw, "swap total (totalswap)\t%s\t%s\t%s\n", humanBytes(m.SwapTotal), humanBytes(m.HostSwapTotal), why)
	fmt.Fprintf(tw, "swap used\t%s\t\t\n", humanBytes(m.SwapUsage))

	if v.Pids.Current.Limited {
		s := v.Pids.Current.Source
		fmt.Fprintf(tw, "tasks (procs)\t%d\t\tcounted in %s (level %d, cgroup %s)\n", v.Pids.Current.Value, s.File, s.Level, s.Cgroup)
	} else {
		fmt.Fprintf(tw, "tasks (procs)\thost's\t\tno limit: host value (no pids cgroup below the root)\n")
	}
	return tw.Flush()
}

// decided names the file that set a number and where it sits: level 0 is
// the process's own cgroup, level N is N directories above it.
func decided(s *limits.Source) string {
	if s == nil {
		return "no limit: host value"
	}
	return fmt.Sprintf("limited by %s (level %d, cgroup %s)", s.File, s.Level, s.Cgroup)
}

// humanBytes prints n in binary units with one decimal, truncated rather
// than rounded so that a value just below a unit never reads as the unit
// ("1023.9 MiB", not "1024 MiB").
func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for n>>(10*i) >= 1024 && i < len(units)-1 {
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	whole := n >> (10 * i)
	tenths := (n - whole<<(10*i)) * 10 >> (10 * i)
	if tenths == 0 {
		return fmt.Sprintf("%d %s", whole, units[i])
	}
	return fmt.Sprintf("%d.%d %s", whole, tenths, units[i])
}

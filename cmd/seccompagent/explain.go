package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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
	why := "no CPU quota at any level"
	if c.Count.Limited {
		cpus = fmt.Sprint(c.Count.Value)
		why = fmt.Sprintf("quota %d/%d us, %s", c.QuotaUS, c.PeriodUS, decided(c.Count.Source))
	}
	fmt.Fprintf(tw, "CPUs (sched_getaffinity)\t%s\t%d\t%s\n", cpus, c.HostOnline, why)
	if c.CpusetSource != nil {
		n, _ := limits.ParseCPUList(c.Cpuset)
		fmt.Fprintf(tw, "cpuset\t%s (%d)\t%d online\tthe kernel applies it to every mask; read from %s\n", c.Cpuset, len(n), c.HostOnline, c.CpusetSource.File)
	}

	m := v.Memory
	why = "no memory limit below the host's RAM"
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
	why = "no swap limit: the host's swap"
	switch {
	case m.SwapLimit.Limited:
		why = decided(m.SwapLimit.Source)
	case m.SwapTotal == 0 && m.HostSwapTotal != 0:
		why = "no swap accounting in this cgroup"
	}
	fmt.Fprintf(tw, "swap total (totalswap)\t%s\t%s\t%s\n", humanBytes(m.SwapTotal), humanBytes(m.HostSwapTotal), why)
	fmt.Fprintf(tw, "swap used\t%s\t\t\n", humanBytes(m.SwapUsage))

	if v.Pids.Current.Limited {
		fmt.Fprintf(tw, "tasks (procs)\t%d\t\tfrom %s\n", v.Pids.Current.Value, v.Pids.Current.Source.File)
	} else {
		fmt.Fprintf(tw, "tasks (procs)\thost's\t\tno pids cgroup below the root\n")
	}
	return tw.Flush()
}

func decided(s *limits.Source) string {
	if s == nil {
		return ""
	}
	lvl := "its own cgroup"
	if s.Level > 0 {
		lvl = fmt.Sprintf("%d level%s up", s.Level, map[bool]string{true: "s", false: ""}[s.Level > 1])
	}
	return fmt.Sprintf("limited by %s (%s, cgroup %s)", s.File, lvl, s.Cgroup)
}

func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}

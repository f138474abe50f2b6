package harness

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sectionMarker starts each section of SectionedCommand's output.
const sectionMarker = "@@@ section "

// SectionedCommand returns the args of a container process that runs each
// shell command in turn (through busybox sh), each preceded by a marker
// line, so that SplitSections can tell their outputs apart. A failing
// command does not stop the others.
func SectionedCommand(cmds ...string) []string {
	var script strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&script, "echo '%s%s'; %s; ", sectionMarker, strings.ReplaceAll(c, "'", ""), c)
	}
	script.WriteString("true")
	return []string{"sh", "-c", script.String()}
}

// SplitSections splits the output of a SectionedCommand container by
// command: the key is the command text (without single quotes).
func SplitSections(out string) map[string]string {
	sections := map[string]string{}
	cur := ""
	var b strings.Builder
	flush := func() {
		if cur != "" {
			sections[cur] = b.String()
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), sectionMarker); ok {
			flush()
			cur = name
			continue
		}
		b.WriteString(line)
	}
	flush()
	return sections
}

// Probe is the parsed output of /probe: key → value.
type Probe map[string]string

// ParseProbe parses the key=value lines printed by test/probe/probe.c;
// other lines are ignored.
func ParseProbe(out string) Probe {
	p := Probe{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" && !strings.ContainsAny(k, " \t") {
			p[k] = v
		}
	}
	return p
}

// Int returns key as a signed integer.
func (p Probe) Int(key string) (int64, error) {
	v, ok := p[key]
	if !ok {
		return 0, fmt.Errorf("probe printed no %q", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("probe %s=%q: %w", key, v, err)
	}
	return n, nil
}

// Uint returns key as an unsigned integer.
func (p Probe) Uint(key string) (uint64, error) {
	v, ok := p[key]
	if !ok {
		return 0, fmt.Errorf("probe printed no %q", key)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("probe %s=%q: %w", key, v, err)
	}
	return n, nil
}

// FreeMem is busybox `free`'s "Mem:" line, in KiB. busybox prints these as
// unsigned numbers: a "used" that went negative shows up as a huge value
// (close to 2^64/1024), so they are kept unsigned here.
type FreeMem struct {
	Total, Used, Free, Shared, BuffCache, Available uint64
}

// ParseFree parses the "Mem:" line of busybox `free` (1.35 prints: total
// used free shared buff/cache available, in KiB).
func ParseFree(out string) (FreeMem, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Mem:" {
			continue
		}
		// busybox prints "Mem:   " and fixed 12-character columns with no
		// separator of their own: a "used" wider than its column (wrapped
		// below zero, which happens when the host's /proc/meminfo cache
		// exceeds the container's total) runs into "total". Split the
		// first column off by position then.
		if len(f) == 6 && len(line) > 19 && strings.HasPrefix(line, "Mem:   ") {
			f = append([]string{"Mem:", strings.TrimSpace(line[7:19])}, strings.Fields(line[19:])...)
		}
		if len(f) < 7 {
			return FreeMem{}, fmt.Errorf("free: Mem: line has %d fields, want 6 numbers: %q", len(f)-1, line)
		}
		var n [6]uint64
		for i := range n {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return FreeMem{}, fmt.Errorf("free: field %d of %q: %w", i+1, line, err)
			}
			n[i] = v
		}
		return FreeMem{Total: n[0], Used: n[1], Free: n[2], Shared: n[3], BuffCache: n[4], Available: n[5]}, nil
	}
	return FreeMem{}, fmt.Errorf("free: no Mem: line in %q", out)
}

// ParseNproc parses the output of `nproc`.
func ParseNproc(out string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("nproc: %q: %w", out, err)
	}
	return n, nil
}

// uptimeRE matches busybox 1.35 `uptime`:
//
//	" HH:MM:SS up [N day[s], ]{H:MM | M min},  load average: ..."
//
// (procps adds a users count before the load average; it is ignored).
var uptimeRE = regexp.MustCompile(`\bup\s+(?:(\d+)\s+days?,\s*)?(?:(\d+):(\d{2})|(\d+)\s+min)\b`)

// ParseUptime parses busybox `uptime` and returns the uptime it shows. The
// output has minute resolution, so the result is rounded down to a minute.
func ParseUptime(out string) (time.Duration, error) {
	m := uptimeRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("uptime: unrecognised output %q", out)
	}
	atoi := func(s string) time.Duration {
		if s == "" {
			return 0
		}
		n, _ := strconv.Atoi(s)
		return time.Duration(n)
	}
	d := atoi(m[1])*24*time.Hour + atoi(m[2])*time.Hour + atoi(m[3])*time.Minute + atoi(m[4])*time.Minute
	return d, nil
}

// HostMemTotal returns the host's MemTotal in bytes (from /proc/meminfo).
func HostMemTotal() (uint64, error) {
	kb, err := HostMeminfo("MemTotal")
	return kb * 1024, err
}

// HostMeminfo returns a /proc/meminfo field of the host in KiB.
func HostMeminfo(field string) (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			break
		}
		return strconv.ParseUint(fs[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", field)
}

// HostUptime returns the host's uptime from /proc/uptime.
func HostUptime() (time.Duration, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/uptime: %q", data)
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(s * float64(time.Second)), nil
}

// HostOnlineCPUs counts the CPUs in /sys/devices/system/cpu/online.
func HostOnlineCPUs() (int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(data)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu online list %q: %w", data, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("cpu online list %q: %w", data, err)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

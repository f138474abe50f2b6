package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The pure parsers: each takes a file's text and says exactly what it found.

var errEmpty = errors.New("empty file")

func firstLine(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errEmpty
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return "", fmt.Errorf("want one line, got %q", s)
	}
	return s, nil
}

// ParseUint parses a file holding one unsigned decimal number.
func ParseUint(s string) (uint64, error) {
	line, err := firstLine(s)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(line, 10, 64)
}

// ParseInt parses a file holding one signed decimal number.
func ParseInt(s string) (int64, error) {
	line, err := firstLine(s)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(line, 10, 64)
}

// ParseMax parses a v2 "max"-or-number file (memory.max, memory.swap.max,
// pids.max): ok=false means "max".
func ParseMax(s string) (v uint64, limited bool, err error) {
	line, err := firstLine(s)
	if err != nil {
		return 0, false, err
	}
	if line == "max" {
		return 0, false, nil
	}
	v, err = strconv.ParseUint(line, 10, 64)
	return v, err == nil, err
}

// ParseCPUMax parses v2 cpu.max, "$MAX $PERIOD" where $MAX is "max" or a
// quota in microseconds; limited=false for "max".
func ParseCPUMax(s string) (quota, period int64, limited bool, err error) {
	line, err := firstLine(s)
	if err != nil {
		return 0, 0, false, err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return 0, 0, false, fmt.Errorf("want \"max|QUOTA PERIOD\", got %q", line)
	}
	period, err = strconv.ParseInt(f[1], 10, 64)
	if err != nil || period <= 0 {
		return 0, 0, false, fmt.Errorf("bad period %q", f[1])
	}
	if f[0] == "max" {
		return 0, period, false, nil
	}
	quota, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return 0, 0, false, fmt.Errorf("bad quota %q", f[0])
	}
	return quota, period, true, nil
}

// ParseCPUList parses the kernel's cpu list format ("0-3,8,10-11"; empty
// means no CPUs) into sorted ids.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad cpu %q in %q", lo, s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad cpu range %q in %q", part, s)
			}
		}
		if b-a > 1<<20 {
			return nil, fmt.Errorf("cpu range %q too large", part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// Keyed finds key among "key value" lines (memory.stat) and parses its
// value; found is false when no line has the key. It allocates nothing
// unless the value is bad: an agent re-reads memory.stat while it answers.
func Keyed(b []byte, key string) (v uint64, found bool, err error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		i := bytes.IndexByte(line, ' ')
		if i < 0 || string(line[:i]) != key {
			continue
		}
		val := bytes.TrimSpace(line[i+1:])
		if v, err = strconv.ParseUint(string(val), 10, 64); err != nil {
			return 0, true, fmt.Errorf("bad %s value %q", key, val)
		}
		return v, true, nil
	}
	return 0, false, nil
}

// ParseMeminfo returns the wanted /proc/meminfo fields in bytes.
func ParseMeminfo(r io.Reader, keys ...string) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// Text only for the wanted lines: the agent reads this file
		// every second while it answers.
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		k := ""
		for _, want := range keys {
			if string(name) == want {
				k = want
			}
		}
		if k == "" {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			return nil, fmt.Errorf("bad %s line", k)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad %s value %q", k, f[0])
		}
		mul := uint64(1)
		if len(f) > 1 && f[1] == "kB" {
			mul = 1024
		}
		if n > math.MaxUint64/mul {
			return nil, fmt.Errorf("%s overflows", k)
		}
		out[k] = n * mul
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s line", k)
		}
	}
	return out, nil
}

// ParseStartTime returns field 22 (starttime, in clock ticks since boot) of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and ')', so
// fields are counted after the last ')'.
func ParseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' closing the command name")
	}
	f := strings.Fields(stat[i+1:])
	const idx = 22 - 3 // fields after ')' start at field 3 (state)
	if len(f) <= idx {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	return strconv.ParseUint(f[idx], 10, 64)
}

// CgroupLine is one line of /proc/<pid>/cgroup.
type CgroupLine struct {
	ID          int
	Controllers []string // empty for the v2 line "0::/path"
	Path        string
}

// ParseProcCgroup parses /proc/<pid>/cgroup ("hierarchy-ID:controllers:path").
func ParseProcCgroup(r io.Reader) ([]CgroupLine, error) {
	var out []CgroupLine
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil {
			return nil, fmt.Errorf("bad hierarchy id in %q", line)
		}
		var ctrls []string
		if parts[1] != "" {
			ctrls = strings.Split(parts[1], ",")
		}
		if !strings.HasPrefix(parts[2], "/") {
			return nil, fmt.Errorf("path is not absolute in %q", line)
		}
		out = append(out, CgroupLine{ID: id, Controllers: ctrls, Path: parts[2]})
	}
	return out, sc.Err()
}

// Mount is a cgroup filesystem from mountinfo.
type Mount struct {
	Root        string // field 4: the cgroup this mount shows at its mount point
	Point       string // field 5
	V2          bool
	Controllers []string // v1: from the super options; v2: filled from cgroup.controllers
}

// ParseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo file
// (proc(5)): "id parent maj:min root point opts [optional...] - fstype source superopts".
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("no separator in %q", line)
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			return nil, fmt.Errorf("short line %q", line)
		}
		switch g[0] {
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(g[2], ",") {
				switch {
				case o == "rw" || o == "ro" || strings.HasPrefix(o, "name=") || strings.Contains(o, "="):
				case o == "noprefix" || o == "xattr" || o == "clone_children" || o == "cpuset_v2_mode":
				default:
					ctrls = append(ctrls, o)
				}
			}
			if len(ctrls) == 0 {
				continue // name=systemd and other named hierarchies
			}
			out = append(out, Mount{Root: unescape(f[3]), Point: unescape(f[4]), Controllers: ctrls})
		case "cgroup2":
			out = append(out, Mount{Root: unescape(f[3]), Point: unescape(f[4]), V2: true})
		}
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for space and so on).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

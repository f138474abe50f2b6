package ocihook

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultLXCFSDir is where Debian's lxcfs unit mounts LXCFS.
const DefaultLXCFSDir = "/var/lib/lxcfs"

// The LXCFS switch: auto (default) mounts LXCFS's files when the host has
// an LXCFS mount, true refuses the container without one, false never
// mounts them.
const (
	AnnotationLXCFS = "seccompagent.io/lxcfs"
	EnvLXCFS        = "SECCOMPAGENT_LXCFS"
)

// LXCFSFiles are the files the modifier may bind from LXCFS, as paths
// inside the container (and inside the LXCFS mount). runc and crun refuse
// any other mount over /proc; sys/devices/system/cpu/online is the CPU list
// glibc's sysconf(_SC_NPROCESSORS_ONLN) reads.
var LXCFSFiles = []string{
	"/proc/cpuinfo",
	"/proc/diskstats",
	"/proc/loadavg",
	"/proc/meminfo",
	"/proc/slabinfo",
	"/proc/stat",
	"/proc/swaps",
	"/proc/uptime",
	"/sys/devices/system/cpu/online",
}

// LXCFS is what the host offers: a live LXCFS mount and the files it serves.
// The modifier takes it as a value, so its decisions are testable without a
// FUSE mount; FindLXCFS fills it from the running system.
type LXCFS struct {
	// Dir is the LXCFS mount point.
	Dir string
	// Files are the LXCFSFiles entries that Dir serves; empty when Dir is
	// not a live LXCFS mount.
	Files []string
	// Missing says why Files is empty or short ("no fuse.lxcfs mount at
	// /var/lib/lxcfs"), for the error of a container that requires LXCFS.
	Missing string
}

// Present reports whether there is anything to mount.
func (l LXCFS) Present() bool { return len(l.Files) > 0 }

func (l LXCFS) missing() string {
	switch {
	case l.Missing != "":
		return l.Missing
	case l.Dir != "":
		return fmt.Sprintf("no fuse.lxcfs mount at %s", l.Dir)
	}
	return fmt.Sprintf("no fuse.lxcfs mount at %s", DefaultLXCFSDir)
}

// FindLXCFS looks for an LXCFS mount at dir in procRoot/self/mountinfo (the
// caller's mount namespace, where the runtime resolves bind sources) and
// lists which of LXCFSFiles it serves. The mount of a daemon that is gone
// fails every stat with ENOTCONN ("Transport endpoint is not connected"):
// such a mount counts as absent.
func FindLXCFS(procRoot, dir string) (LXCFS, error) {
	l := LXCFS{Dir: filepath.Clean(dir)}
	f, err := os.Open(filepath.Join(procRoot, "self/mountinfo"))
	if err != nil {
		return l, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	found, err := hasLXCFSMount(f, l.Dir)
	if err != nil {
		return l, fmt.Errorf("read mount table %s: %w", f.Name(), err)
	}
	if !found {
		l.Missing = fmt.Sprintf("no fuse.lxcfs mount at %s", l.Dir)
		return l, nil
	}
	var missing []string
	for _, file := range LXCFSFiles {
		st, err := os.Stat(filepath.Join(l.Dir, file))
		switch {
		case err == nil && st.Mode().IsRegular():
			l.Files = append(l.Files, file)
		case err == nil:
			missing = append(missing, file+" (not a regular file)")
		default:
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			missing = append(missing, fmt.Sprintf("%s (%v)", file, err))
		}
	}
	if len(missing) > 0 {
		l.Missing = fmt.Sprintf("fuse.lxcfs mount at %s does not serve %s", l.Dir, strings.Join(missing, ", "))
	}
	// Files that disagree with the agent are worse than none.
	if d := findLXCFSDaemon(procRoot, l.Dir); d.found && (!d.loadavg || !d.cfs) {
		var flags []string
		if !d.loadavg {
			flags = append(flags, "-l (--enable-loadavg)")
		}
		if !d.cfs {
			flags = append(flags, "--enable-cfs")
		}
		l.Files = nil
		l.Missing = fmt.Sprintf("the lxcfs serving %s runs without %s, so its files would contradict the agent (docs/lxcfs.md shows the flags)",
			l.Dir, strings.Join(flags, " and "))
	}
	return l, nil
}

// hasLXCFSMount reports whether mountinfo lists a fuse.lxcfs mount whose
// mount point is dir. Only the last mount at a point is visible, so a later
// entry at the same point overrides an earlier one.
func hasLXCFSMount(r io.Reader, dir string) (bool, error) {
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root point options [optional...] - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 5 {
			return false, fmt.Errorf("malformed line %q", sc.Text())
		}
		if unescapeOctal(f[4]) != dir {
			continue
		}
		fstype, _, _ := strings.Cut(post, " ")
		found = fstype == "fuse.lxcfs"
	}
	return found, sc.Err()
}

// unescapeOctal undoes mountinfo's \ooo escapes (space, tab, newline, \).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseLXCFS reads a seccompagent.io/lxcfs value.
func parseLXCFS(v string) (string, error) {
	switch v = strings.TrimSpace(v); v {
	case "auto", "true", "false":
		return v, nil
	}
	return "", errors.New("want auto, true or false")
}

// addLXCFSMounts appends a bind mount from LXCFS for each file it serves
// whose destination has no mount yet: the user's own mount wins, and a
// second run adds nothing. It returns the new list and the destinations
// added.
func addLXCFSMounts(mounts []json.RawMessage, l LXCFS) ([]json.RawMessage, []string, error) {
	taken := map[string]bool{}
	for i, raw := range mounts {
		var m struct {
			Destination string `json:"destination"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, nil, fmt.Errorf("mounts[%d]: %w", i, err)
		}
		taken[path.Clean("/"+m.Destination)] = true
	}
	var added []string
	for _, file := range l.Files {
		if taken[file] {
			continue
		}
		// A plain bind like LXC's lxcfs hook and Incus do: LXCFS's
		// files are read-only to everyone already. rprivate keeps a
		// host-side unmount (LXCFS restarting) from propagating into
		// the container.
		raw, err := encode(lxcfsMount{Destination: file, Type: "bind", Source: filepath.Join(l.Dir, file),
			Options: []string{"bind", "rprivate"}})
		if err != nil {
			return nil, nil, err
		}
		mounts = append(mounts, raw)
		added = append(added, file)
	}
	return mounts, added, nil
}

type lxcfsMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options"`
}

// WantsLXCFS reports whether config's container would get LXCFS's files if
// the host had them: it is enabled and does not say seccompagent.io/lxcfs=
// false. Callers look for LXCFS (FindLXCFS stats files on a FUSE mount)
// only then, so a container that does not use it never waits on LXCFS. An
// unreadable config or bad option reports true: ModifyConfig then gives the
// error.
func (m Modifier) WantsLXCFS(config []byte) bool {
	var spec specs.Spec
	if err := json.Unmarshal(config, &spec); err != nil {
		return true
	}
	s, err := readSettings(&spec, m.DefaultEnabled, m.ForceEnable)
	return err != nil || (s.Enabled && s.LXCFS != "false")
}

// lxcfsDaemon is what the command line of the lxcfs serving a directory
// says about the views it renders.
type lxcfsDaemon struct {
	found   bool
	loadavg bool // -l / --enable-loadavg: /proc/loadavg per container
	cfs     bool // --enable-cfs: CPU views sized by the quota
}

// findLXCFSDaemon looks in procRoot for an lxcfs process serving dir and
// reads its flags. Debian's lxcfs.service runs `lxcfs /var/lib/lxcfs`
// without either flag: its /proc/loadavg is then the host's and its CPU
// list every CPU, which would contradict the agent's sysinfo loads and
// sched_getaffinity.
func findLXCFSDaemon(procRoot, dir string) lxcfsDaemon {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return lxcfsDaemon{}
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "lxcfs" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if d, ok := parseLXCFSCmdline(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), dir); ok {
			return d
		}
	}
	return lxcfsDaemon{}
}

// parseLXCFSCmdline reads lxcfs's options (getopt: short clusters, -o and
// -p take a value) and reports them if its mount point is dir.
func parseLXCFSCmdline(argv []string, dir string) (lxcfsDaemon, bool) {
	d := lxcfsDaemon{found: true}
	mountpoint := ""
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--enable-loadavg":
			d.loadavg = true
		case a == "--enable-cfs":
			d.cfs = true
		case a == "--":
			if i+1 < len(argv) {
				mountpoint = argv[i+1]
			}
			i = len(argv)
		case strings.HasPrefix(a, "--"):
			if (a == "--pidfile") && i+1 < len(argv) {
				i++
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				c := a[j]
				if c == 'l' {
					d.loadavg = true
				}
				if c == 'o' || c == 'p' {
					if j == len(a)-1 {
						i++ // the value is the next argument
					}
					break
				}
			}
		default:
			mountpoint = a
		}
	}
	return d, mountpoint != "" && filepath.Clean(mountpoint) == filepath.Clean(dir)
}

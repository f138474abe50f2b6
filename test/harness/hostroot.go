package harness

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvHostRoot names the directory under which the host's own programs are
// found when they are not at / (the cgroup v2 VM tier: the host's /usr is a
// read-only 9p share at /host/usr, next to copies of its /lib links and
// the /etc entries of hostEtcPaths). Unset means /.
const EnvHostRoot = "SECCOMPAGENT_E2E_HOST_ROOT"

// HostRoot returns $SECCOMPAGENT_E2E_HOST_ROOT, or / when it is unset.
func HostRoot() string {
	if r := os.Getenv(EnvHostRoot); r != "" {
		return filepath.Clean(r)
	}
	return "/"
}

// maxSymlinks bounds the links followed by resolveUnder (the kernel's
// MAXSYMLINKS).
const maxSymlinks = 40

// HostPath returns where the host path p is on this machine, with every
// symlink resolved: under HostRoot as a chroot would resolve it (absolute
// targets such as /usr/bin/java -> /etc/alternatives/java taken relative
// to the root). The result exists.
func HostPath(p string) (string, error) {
	return resolveUnder(HostRoot(), p)
}

// resolveUnder follows p's symlinks one component at a time inside root
// and returns the resolved path (under root), which must exist.
func resolveUnder(root, p string) (string, error) {
	rest := splitPath(p)
	cur := "/" // resolved so far, relative to root
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		rest = append(splitPath(target), rest...)
		cur = "/"
	}
	return filepath.Join(root, cur), nil
}

// splitPath splits an absolute path into its components, without empty
// ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// WarmFiles reads the files at paths (a directory stands for every
// regular file below it) to the end, so that they are in the page cache,
// charged to the caller's memory cgroup, and returns how many bytes it
// read.
func WarmFiles(paths ...string) (int64, error) {
	var total int64
	read := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(io.Discard, f)
		total += n
		return err
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return read(path)
		})
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

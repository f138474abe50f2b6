package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// The initramfs is a cpio archive in the "newc" format the kernel unpacks
// (init/initramfs.c): a 110-byte ASCII header per entry ("070701" and 13
// eight-digit hex fields), the NUL-terminated name padded to 4 bytes, the
// data padded to 4 bytes, and a final "TRAILER!!!" entry.

// File-type bits of the cpio mode field (the same as struct stat's).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

// cpioEntry is one archive member. Exactly one of Source (a host file whose
// content is copied), Data, Target (symlink) applies, or none for a
// directory or device node.
type cpioEntry struct {
	Name   string // path inside the archive, without a leading "/"
	Mode   uint32 // type bits | permission bits
	Source string
	Data   []byte
	Target string
	Major  uint32 // device nodes
	Minor  uint32
}

// archive collects entries by name; later additions replace earlier ones
// and every parent directory is created implicitly.
type archive struct {
	entries map[string]cpioEntry
}

func newArchive() *archive { return &archive{entries: map[string]cpioEntry{}} }

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (a *archive) add(e cpioEntry) {
	e.Name = cleanName(e.Name)
	if e.Name == "" {
		return
	}
	for dir := path.Dir(e.Name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = cpioEntry{Name: dir, Mode: cpioDir | 0o755}
		}
	}
	a.entries[e.Name] = e
}

// dir adds a directory with permission bits perm.
func (a *archive) dir(name string, perm uint32) {
	a.add(cpioEntry{Name: name, Mode: cpioDir | perm})
}

// file adds the host file src (symlinks followed) as name.
func (a *archive) file(name, src string, perm uint32) {
	a.add(cpioEntry{Name: name, Mode: cpioRegular | perm, Source: src})
}

// data adds a regular file with the given content.
func (a *archive) data(name string, content []byte, perm uint32) {
	a.add(cpioEntry{Name: name, Mode: cpioRegular | perm, Data: content})
}

// symlink adds name -> target.
func (a *archive) symlink(name, target string) {
	a.add(cpioEntry{Name: name, Mode: cpioSymlink | 0o777, Target: target})
}

// tree adds the host directory src (recursively, symlinks kept as
// symlinks) under name.
func (a *archive) tree(name, src string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	a.dir(name, permBits(fi.Mode()))
	for _, e := range entries {
		s := src + "/" + e.Name()
		n := name + "/" + e.Name()
		info, err := os.Lstat(s)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(s)
			if err != nil {
				return err
			}
			a.symlink(n, t)
		case info.IsDir():
			if err := a.tree(n, s); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			a.file(n, s, permBits(info.Mode()))
		default:
			return fmt.Errorf("%s: unsupported file type %v", s, info.Mode().Type())
		}
	}
	return nil
}

// writeTo writes the archive in name order (parents before children), with
// every timestamp and owner zero, so identical inputs give identical bytes.
func (a *archive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriterSize(w, 1<<20)
	var off int64
	ino := uint32(1)
	for _, n := range names {
		e := a.entries[n]
		var content []byte
		switch {
		case e.Mode&0o170000 == cpioSymlink:
			content = []byte(e.Target)
		case e.Source != "":
			b, err := os.ReadFile(e.Source)
			if err != nil {
				return err
			}
			content = b
		default:
			content = e.Data
		}
		nlink := uint32(1)
		if e.Mode&0o170000 == cpioDir {
			nlink = 2
		}
		if err := writeCpioRecord(bw, &off, ino, e.Mode, nlink, e.Major, e.Minor, e.Name, content); err != nil {
			return err
		}
		ino++
	}
	if err := writeCpioRecord(bw, &off, 0, 0, 1, 0, 0, "TRAILER!!!", nil); err != nil {
		return err
	}
	return bw.Flush()
}

func writeCpioRecord(w io.Writer, off *int64, ino, mode, nlink, major, minor uint32, name string, content []byte) error {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(content), 0, 0, major, minor, len(name)+1, 0)
	if err := writePadded(w, off, append([]byte(hdr+name), 0)); err != nil {
		return err
	}
	return writePadded(w, off, content)
}

// writePadded writes b and zero bytes up to the next multiple of 4 of the
// archive offset.
func writePadded(w io.Writer, off *int64, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return err
	}
	*off += int64(len(b))
	if pad := (4 - *off%4) % 4; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
		*off += pad
	}
	return nil
}

// permBits converts Go's file mode to the permission, setuid, setgid and
// sticky bits of a cpio/stat mode.
func permBits(m os.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

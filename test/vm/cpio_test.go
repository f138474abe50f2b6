package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// readNewc parses a newc archive the way the kernel does: name -> (mode,
// content), checking the magic and the 4-byte alignment of every part.
func readNewc(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return int(v)
		}
		mode, size, rmaj, rmin, nameSize := field(1), field(6), field(9), field(10), field(11)
		off += 110
		name := string(b[off : off+nameSize-1])
		if b[off+nameSize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += nameSize
		align()
		content := b[off : off+size]
		off += size
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out[name] = cpioEntry{Name: name, Mode: uint32(mode), Data: content, Major: uint32(rmaj), Minor: uint32(rmin)}
	}
}

func TestArchive(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	a := newArchive()
	a.data("/init", []byte("#!/bin/sh\n"), 0o755)
	a.add(cpioEntry{Name: "dev/console", Mode: cpioChar | 0o600, Major: 5, Minor: 1})
	if err := a.tree("opt/x", src); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	want := map[string]struct {
		mode uint32
		data string
	}{
		"init":        {cpioRegular | 0o755, "#!/bin/sh\n"},
		"dev":         {cpioDir | 0o755, ""},
		"dev/console": {cpioChar | 0o600, ""},
		"opt":         {cpioDir | 0o755, ""},
		"opt/x":       {cpioDir | 0o1777, ""},
		"opt/x/sub":   {cpioDir | 0o755, ""},
		"opt/x/sub/f": {cpioRegular | 0o640, "hello"},
		"opt/x/link":  {cpioSymlink | 0o777, "sub/f"},
	}
	if len(got) != len(want) {
		t.Errorf("archive has %d entries, want %d: %v", len(got), len(want), got)
	}
	for name, w := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if e.Mode != w.mode || string(e.Data) != w.data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, e.Mode, e.Data, w.mode, w.data)
		}
	}
	if c := got["dev/console"]; c.Major != 5 || c.Minor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.Major, c.Minor)
	}
	// Identical inputs give identical bytes (the cache compares them).
	var again bytes.Buffer
	if err := a.writeTo(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of the same archive differ")
	}
}

func TestParseMetapackageDepends(t *testing.T) {
	for _, c := range []struct {
		name, out, want string
		err             bool
	}{
		{"bookworm", "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n", "6.1.0-57-amd64", false},
		{"alternatives", "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: firmware-linux\n", "6.12.9-amd64", false},
		{"other depends first", "linux-image-amd64\n  Depends: initramfs-tools\n  Depends: linux-image-6.1.0-9-amd64\n  Recommends: firmware\n", "6.1.0-9-amd64", false},
		{"not a kernel", "linux-image-amd64\n  Depends: linux-image-amd64-signed-template\n", "", true},
		{"none", "linux-image-amd64\n", "", true},
	} {
		got, err := parseMetapackageDepends(c.out)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: got %q, %v; want %q, error %v", c.name, got, err, c.want, c.err)
		}
	}
}

// Package vm is the cgroup v2 test tier: it boots a Debian kernel in a
// qemu VM (TCG, no KVM needed) with cgroup v1 disabled and runs the e2e
// tier's tests (real runc and crun containers, with and without the agent)
// inside it.
//
// Everything comes from Debian packages: the kernel and its modules from
// the package linux-image-amd64 depends on, fetched with `apt-get download`
// and unpacked into build/vm/kernel (never installed on the host), static
// busybox, runc, crun, jq and lxcfs (with liblxcfs.so and the fuse module)
// with the shared libraries ldd names. The agent, seccompagent-runtime and
// `go test -c` e2e and notify binaries are built from this module, with a
// static i386 caller for the notify kernel tests (the VM has no gcc), the
// test rootfs by test/rootfs/build.sh, the consumer matrix's rootfs by
// harness.BuildConsumerRootfs. All of it goes into one uncompressed
// initramfs under build/vm/ in the module; a 9p share of build/vm/run
// carries the test settings in and the results out, and a read-only one
// of the host's /usr lets the consumer matrix run the host's python3, node
// and java in the VM's containers (they are far too big for the
// initramfs).
package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

//go:embed init.sh
var initScript []byte

// Modules are loaded in the VM (with their dependencies): the 9p share for
// the results, overlay for runtimes and images that want it, and fuse for
// LXCFS.
var Modules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "fuse"}

// Paths inside the VM.
const (
	vmAgent   = "opt/seccompagent/bin/seccompagent"
	vmWrapper = "opt/seccompagent/bin/seccompagent-runtime"
	vmTest    = "opt/seccompagent/bin/e2e.test"
	vmRootfs  = "opt/seccompagent/rootfs"
	// The notify package's kernel tier and its i386 caller: the host may
	// lack kernel features (ia32 emulation) that Debian's kernel has.
	vmNotifyTest = "opt/seccompagent/bin/notify.test"
	vmI386       = "opt/seccompagent/bin/compat-i386"
	// The consumer matrix's rootfs (harness.BuildConsumerRootfs), and
	// where the host's own programs are: init mounts the host's /usr (a
	// read-only 9p share) at vmHostRoot/usr, next to the host's /lib*
	// links and the /etc entries its programs need, copied in here.
	vmConsumerRootfs = "opt/seccompagent/consumers-rootfs"
	vmHostRoot       = "host"
)

// Image is a bootable kernel + initramfs.
type Image struct {
	Kernel    Kernel
	Initramfs string
	// Reused is true when the initramfs was already up to date.
	Reused bool
	// Steps are how long each build step took, in order.
	Steps []Step
}

// Step is one timed build step.
type Step struct {
	Name string
	Took time.Duration
}

// Builder builds the VM image into Dir (build/vm in the module).
type Builder struct {
	ModuleRoot string
	Dir        string
	Kernel     Kernel
	Logf       func(format string, args ...any)
	// Extra are more files for the image: path in the VM (no leading
	// slash) → host file, with the shared libraries it needs. A path
	// under GuestRootfs adds to the containers' rootfs.
	Extra map[string]string
	// Consumers adds the consumer matrix's rootfs and what the host's
	// programs need besides /usr (vmHostRoot), which init mounts from the
	// hostusr share (BootOptions.HostUsr). TestCgroupV2VM sets it.
	Consumers bool
}

func (b *Builder) logf(format string, args ...any) {
	if b.Logf != nil {
		b.Logf(format, args...)
	}
}

// Build makes (or reuses) every piece and the initramfs.
func (b *Builder) Build(ctx context.Context) (*Image, error) {
	img := &Image{Kernel: b.Kernel}
	timed := func(name string, f func() error) error {
		start := time.Now()
		err := f()
		img.Steps = append(img.Steps, Step{name, time.Since(start)})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	binDir := filepath.Join(b.Dir, "bin")
	rootfs := filepath.Join(b.Dir, "rootfs")
	consumers := "" // the consumer rootfs, if b.Consumers
	if b.Consumers {
		consumers = filepath.Join(b.Dir, "consumers-rootfs")
	}
	var agent, wrapper, testBin, notifyBin, i386Bin, modTree string
	steps := []struct {
		name string
		f    func() error
	}{
		{"agent", func() (err error) { agent, err = harness.BuildAgent(binDir); return err }},
		{"wrapper", func() (err error) { wrapper, err = harness.BuildWrapper(binDir); return err }},
		{"e2e test binary", func() (err error) { testBin, err = b.buildTestBinary(ctx, binDir); return err }},
		{"notify test binary", func() (err error) { notifyBin, err = b.buildNotifyTest(ctx, binDir); return err }},
		{"i386 caller", func() (err error) { i386Bin, err = b.buildI386Caller(ctx, binDir); return err }},
		{"rootfs", func() error { return harness.BuildRootfs(rootfs) }},
		{"consumer rootfs", func() error {
			if consumers == "" {
				return nil
			}
			return buildConsumerRootfs(consumers, filepath.Join(b.Dir, "go-consumers"))
		}},
		{"modules", func() (err error) { modTree, err = b.stageModules(ctx); return err }},
		{"initramfs", func() (err error) {
			img.Initramfs, img.Reused, err = b.writeInitramfs(ctx, map[string]string{vmAgent: agent, vmWrapper: wrapper,
				vmTest: testBin, vmNotifyTest: notifyBin, vmI386: i386Bin}, rootfs, consumers, modTree)
			return err
		}},
	}
	for _, s := range steps {
		if err := timed(s.name, s.f); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// buildConsumerRootfs builds the consumer matrix's rootfs on the host
// (the VM has no toolchain): every program in it is required, the VM's
// tests run under CI=true.
func buildConsumerRootfs(dir, work string) error {
	c := harness.BuildConsumerRootfs(dir, work)
	for _, e := range []struct {
		what string
		err  error
	}{{"rootfs", c.Err}, {"musl busybox", c.Musl}, {"glibc probe", c.Glibc}, {"Go programs", c.Go}, {"Java probe", c.Java}} {
		if e.err != nil {
			return fmt.Errorf("%s: %w", e.what, e.err)
		}
	}
	return nil
}

// addHostRoot adds what the host's programs need besides /usr under
// vmHostRoot: the /usr mount point, the host's /lib* symlinks and the /etc
// entries of harness.HostEtcEntries (the dynamic linker's cache, the
// alternatives, the JVM's configuration). Only /usr is shared, so the
// host must have merged /usr.
func addHostRoot(a *archive) error {
	a.dir(vmHostRoot+"/usr", 0o755)
	for _, dir := range harness.HostLibDirs() {
		fi, err := os.Lstat(dir)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return fmt.Errorf("%s is a directory, not a link into /usr: the VM shares only the host's /usr (merged /usr, as Debian 12 has)", dir)
		}
		target, err := os.Readlink(dir)
		if err != nil {
			return err
		}
		a.symlink(vmHostRoot+dir, target)
	}
	etc, err := harness.HostEtcEntries()
	if err != nil {
		return err
	}
	for _, p := range etc {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return err
		case fi.IsDir():
			err = a.tree(vmHostRoot+p, p)
		default:
			a.file(vmHostRoot+p, p, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// goTool finds the go command (PATH, else /usr/local/go/bin/go).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// buildTestBinary compiles ./test/e2e with `go test -c`, statically
// (CGO_ENABLED=0: the tests themselves need no C library).
func (b *Builder) buildTestBinary(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "e2e.test")
	cmd := exec.CommandContext(ctx, goTool(), "test", "-c", "-o", out, "./test/e2e")
	cmd.Dir = b.ModuleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c ./test/e2e: %w\n%s", err, msg)
	}
	return out, nil
}

// buildNotifyTest compiles ./notify with `go test -c`. It needs cgo
// (libseccomp): its shared libraries go into the image with it.
func (b *Builder) buildNotifyTest(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "notify.test")
	cmd := exec.CommandContext(ctx, goTool(), "test", "-c", "-o", out, "./notify")
	cmd.Dir = b.ModuleRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c ./notify: %w\n%s", err, msg)
	}
	return out, nil
}

// buildI386Caller builds notify/testdata/compat.c as a static i386 program
// (gcc -m32, from gcc-multilib), for TestKernelCompatI386 in the VM.
func (b *Builder) buildI386Caller(ctx context.Context, dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", errors.New("gcc not found: install gcc and gcc-multilib (`make deps`)")
	}
	out := filepath.Join(dir, "compat-i386")
	cmd := exec.CommandContext(ctx, gcc, "-m32", "-static", "-O2", "-o", out, filepath.Join(b.ModuleRoot, "notify", "testdata", "compat.c"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc -m32 -static (gcc-multilib, `make deps`): %w\n%s", err, msg)
	}
	return out, nil
}

// stageModules copies Modules and their dependencies (from the kernel's
// modules.dep) into Dir/modules-<ver>/lib/modules/<ver> and runs depmod
// -b on that tree, unless a previous run already did for the same
// kernel, module list and module files. It returns the staging root.
func (b *Builder) stageModules(ctx context.Context) (string, error) {
	k := b.Kernel
	deps, err := readModulesDep(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return "", err
	}
	byName := map[string]string{}
	for rel := range deps {
		byName[moduleName(rel)] = rel
	}
	need := map[string]bool{}
	var visit func(rel string)
	visit = func(rel string) {
		if need[rel] {
			return
		}
		need[rel] = true
		for _, d := range deps[rel] {
			visit(d)
		}
	}
	for _, m := range Modules {
		rel, ok := byName[strings.ReplaceAll(m, "-", "_")]
		if !ok {
			return "", fmt.Errorf("module %s not in %s/modules.dep", m, k.Modules)
		}
		visit(rel)
	}
	rels := make([]string, 0, len(need))
	for rel := range need {
		rels = append(rels, rel)
	}
	sort.Strings(rels)

	// The cache key: kernel version, module files (size and mtime).
	h := sha256.New()
	fmt.Fprintln(h, k.Version)
	for _, rel := range rels {
		fi, err := os.Stat(filepath.Join(k.Modules, rel))
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, rel, fi.Size(), fi.ModTime().UnixNano())
	}
	key := hex.EncodeToString(h.Sum(nil))
	root := filepath.Join(b.Dir, "modules-"+k.Version)
	stamp := filepath.Join(root, ".stamp")
	if old, err := os.ReadFile(stamp); err == nil && string(old) == key {
		b.logf("modules: reusing %s (%d modules)", root, len(rels))
		return root, nil
	}
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	dst := filepath.Join(root, "lib", "modules", k.Version)
	for _, rel := range rels {
		if err := copyModule(ctx, filepath.Join(k.Modules, rel), filepath.Join(dst, rel)); err != nil {
			return "", err
		}
	}
	for _, f := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		if data, err := os.ReadFile(filepath.Join(k.Modules, f)); err == nil {
			if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
				return "", err
			}
		}
	}
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		return "", errors.New("depmod not found: install kmod (`make deps`)")
	}
	if out, err := exec.CommandContext(ctx, depmod, "-b", root, k.Version).CombinedOutput(); err != nil {
		return "", fmt.Errorf("depmod -b %s %s: %w\n%s", root, k.Version, err, out)
	}
	if err := os.WriteFile(stamp, []byte(key), 0o644); err != nil {
		return "", err
	}
	b.logf("modules: staged %d modules for %s: %s", len(rels), k.Version, strings.Join(rels, " "))
	return root, nil
}

// readModulesDep parses modules.dep: "rel/path.ko: dep.ko dep2.ko".
func readModulesDep(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, sc.Err()
}

// moduleName is the module name of a modules.dep path
// (kernel/fs/9p/9p.ko.xz -> 9p), with dashes as underscores.
func moduleName(rel string) string {
	n := filepath.Base(rel)
	if i := strings.Index(n, ".ko"); i >= 0 {
		n = n[:i]
	}
	return strings.ReplaceAll(n, "-", "_")
}

// copyModule copies a module file, decompressing .ko.xz/.ko.zst/.ko.gz
// (busybox modprobe loads plain .ko files) and keeping the .ko name.
func copyModule(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	var data []byte
	var err error
	switch ext := filepath.Ext(src); ext {
	case ".ko":
		data, err = os.ReadFile(src)
	case ".xz", ".zst", ".gz":
		tool := map[string]string{".xz": "xz", ".zst": "zstd", ".gz": "gzip"}[ext]
		dst = strings.TrimSuffix(dst, ext)
		data, err = exec.CommandContext(ctx, tool, "-dc", src).Output()
		if err != nil {
			err = fmt.Errorf("%s -dc %s: %w", tool, src, err)
		}
	default:
		err = fmt.Errorf("unknown module file type: %s", src)
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// hostBinary resolves a command on PATH to its real file.
func hostBinary(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH: run `make deps`", name)
	}
	return filepath.EvalSymlinks(p)
}

// sharedLibs returns the shared libraries (as ldd names them, the dynamic
// loader included) of the dynamically linked ELF file bin; none for a
// static one.
func sharedLibs(ctx context.Context, bin string) ([]string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	dynamic := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	f.Close()
	if !dynamic {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if strings.HasPrefix(line, "not found") {
			return nil, fmt.Errorf("ldd %s: a library is missing:\n%s", bin, out)
		}
		if p, _, _ := strings.Cut(line, " ("); strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, nil
}

// writeInitramfs assembles the archive; when it is byte-identical to the
// existing Dir/initramfs.cpio, that file is kept.
func (b *Builder) writeInitramfs(ctx context.Context, built map[string]string, rootfs, consumers, modTree string) (string, bool, error) {
	a := newArchive()
	for _, d := range []string{"proc", "sys", "dev", "run", "root", "etc", "results", "newroot", "usr/bin", "usr/sbin", "sbin"} {
		a.dir(d, 0o755)
	}
	a.dir("tmp", 0o1777)
	a.add(cpioEntry{Name: "dev/console", Mode: cpioChar | 0o600, Major: 5, Minor: 1})
	a.data("init", initScript, 0o755)
	a.data("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	a.data("etc/group", []byte("root:x:0:\n"), 0o644)

	// Static busybox and its applets: the VM's shell and tools.
	busybox, err := filepath.EvalSymlinks("/bin/busybox")
	if err != nil {
		return "", false, errors.New("/bin/busybox not found: install busybox-static (`make deps`)")
	}
	if libs, err := sharedLibs(ctx, busybox); err != nil || len(libs) > 0 {
		return "", false, fmt.Errorf("%s is not statically linked: install busybox-static (`make deps`)", busybox)
	}
	a.file("bin/busybox", busybox, 0o755)
	list, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return "", false, fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			a.symlink("bin/"+applet, "busybox")
		}
	}

	// The runtimes, jq, lxcfs, the agent, the wrapper and the test
	// binaries, with their libraries. lxcfs dlopens liblxcfs.so, which ldd
	// does not list: it goes in at its own path.
	bins := maps.Clone(built)
	maps.Copy(bins, b.Extra)
	for name, dir := range map[string]string{"runc": "usr/sbin", "crun": "usr/bin", "jq": "usr/bin", "lxcfs": "usr/bin"} {
		p, err := hostBinary(name)
		if err != nil {
			return "", false, err
		}
		bins[dir+"/"+name] = p
	}
	liblxcfs, err := filepath.Glob("/usr/lib/*/lxcfs/liblxcfs.so")
	if err != nil || len(liblxcfs) != 1 {
		return "", false, errors.New("liblxcfs.so not found under /usr/lib/*/lxcfs: install lxcfs (`make deps`)")
	}
	bins[strings.TrimPrefix(liblxcfs[0], "/")] = liblxcfs[0]
	for dst, src := range bins {
		a.file(dst, src, 0o755)
		libs, err := sharedLibs(ctx, src)
		if err != nil {
			return "", false, err
		}
		for _, lib := range libs {
			a.file(lib, lib, 0o755)
		}
	}
	if err := a.tree(vmRootfs, rootfs); err != nil {
		return "", false, err
	}
	if consumers != "" {
		if err := a.tree(vmConsumerRootfs, consumers); err != nil {
			return "", false, err
		}
		if err := addHostRoot(a); err != nil {
			return "", false, err
		}
	}
	if err := a.tree("lib/modules", filepath.Join(modTree, "lib", "modules")); err != nil {
		return "", false, err
	}

	out := filepath.Join(b.Dir, "initramfs.cpio")
	tmp, err := os.CreateTemp(b.Dir, "initramfs-*.tmp")
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if err := a.writeTo(io.MultiWriter(tmp, h)); err != nil {
		tmp.Close()
		return "", false, err
	}
	if err := tmp.Close(); err != nil {
		return "", false, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if old, err := os.ReadFile(out + ".sha256"); err == nil && bytes.Equal(bytes.TrimSpace(old), []byte(sum)) {
		if _, err := os.Stat(out); err == nil {
			return out, true, nil
		}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(out+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return "", false, err
	}
	fi, _ := os.Stat(out)
	b.logf("initramfs: wrote %s (%d MiB, %d entries)", out, fi.Size()>>20, len(a.entries))
	return out, false, nil
}

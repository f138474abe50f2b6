package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvKernel selects the kernel version to boot (e.g. 6.1.0-57-amd64, the
// package linux-image-<ver>); default: the version Debian's metapackage
// linux-image-amd64 depends on.
const EnvKernel = "SECCOMPAGENT_VM_KERNEL"

// metapackage names the current Debian kernel through its one Depends.
const metapackage = "linux-image-amd64"

// Kernel is a Debian kernel package extracted into the build directory:
// nothing of it is installed on the host (its /boot and /lib/modules stay
// untouched).
type Kernel struct {
	Version string // e.g. 6.1.0-57-amd64
	Image   string // <dir>/<Version>/boot/vmlinuz-<Version>
	Modules string // <dir>/<Version>/lib/modules/<Version>, with modules.dep
}

// FindKernel returns the kernel to boot, extracted under dir: the version
// in $SECCOMPAGENT_VM_KERNEL, else the one linux-image-amd64 depends on
// (`apt-cache depends`). A tree extracted earlier is reused; otherwise the
// package is fetched with `apt-get download` into dir, unpacked with
// `dpkg-deb -x`, and `depmod -b` writes the modules.dep the package does
// not ship (Debian generates it in postinst).
func FindKernel(ctx context.Context, dir string) (Kernel, error) {
	version := os.Getenv(EnvKernel)
	if version == "" {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", metapackage).Output()
		if err != nil {
			return Kernel{}, fmt.Errorf("apt-cache depends %s: %w (the VM tier boots a Debian kernel: needs apt)", metapackage, err)
		}
		if version, err = parseMetapackageDepends(string(out)); err != nil {
			return Kernel{}, err
		}
	}
	if strings.ContainsAny(version, "/ ") || version == "" || version[0] == '.' {
		return Kernel{}, fmt.Errorf("%s=%q is not a kernel version", EnvKernel, version)
	}
	root := filepath.Join(dir, version)
	k := Kernel{
		Version: version,
		Image:   filepath.Join(root, "boot", "vmlinuz-"+version),
		Modules: filepath.Join(root, "lib", "modules", version),
	}
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return k, nil
	}
	if err := extractKernel(ctx, dir, version); err != nil {
		return Kernel{}, err
	}
	for _, p := range []string{k.Image, filepath.Join(k.Modules, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return Kernel{}, fmt.Errorf("kernel package linux-image-%s: %w", version, err)
		}
	}
	return k, nil
}

// parseMetapackageDepends finds the versioned kernel package in `apt-cache
// depends linux-image-amd64` output ("  Depends: linux-image-6.1.0-57-amd64")
// and returns its version (6.1.0-57-amd64).
func parseMetapackageDepends(out string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		kind, pkg, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || strings.TrimPrefix(kind, "|") != "Depends" {
			continue
		}
		pkg = strings.TrimSpace(pkg)
		if v, ok := strings.CutPrefix(pkg, "linux-image-"); ok && v != "" && v[0] >= '0' && v[0] <= '9' {
			return v, nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image-<version> package:\n%s", metapackage, out)
}

// extractKernel downloads linux-image-<version> into dir and unpacks it
// into dir/<version>, through a temporary directory so that an interrupted
// run never leaves a half tree that looks complete.
func extractKernel(ctx context.Context, dir, version string) error {
	for _, tool := range []string{"apt-get", "dpkg-deb", "depmod"} {
		if _, err := exec.LookPath(tool); err != nil {
			hint := ""
			if tool == "depmod" {
				hint = ": install kmod (`make deps`)"
			}
			return fmt.Errorf("%s not found%s", tool, hint)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pkg := "linux-image-" + version
	dl, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dl)
	download := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = dl
		return cmd.CombinedOutput()
	}
	out, err := download()
	if err != nil && os.Geteuid() == 0 {
		// Debian drops superseded kernel ABIs from the archive: stale
		// package lists name a file that is gone. Refresh them once.
		if upd, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get download %s: %w\n%s\napt-get update: %v\n%s", pkg, err, out, uerr, upd)
		}
		out, err = download()
	}
	if err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files in %s", pkg, len(debs), dl)
	}
	tree := filepath.Join(dl, "tree")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tree).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	// A merged-/usr package would ship usr/lib/modules; the builder reads
	// lib/modules.
	if _, err := os.Stat(filepath.Join(tree, "lib", "modules", version)); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("usr/lib", filepath.Join(tree, "lib")); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", tree, version).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %w\n%s", tree, version, err, out)
	}
	if err := os.WriteFile(filepath.Join(tree, ".complete"), []byte(filepath.Base(debs[0])+"\n"), 0o644); err != nil {
		return err
	}
	root := filepath.Join(dir, version)
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	return os.Rename(tree, root)
}

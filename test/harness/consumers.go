package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MuslBusyboxDir is where BuildMuslBusybox caches its source, build and
// binary: the module's build/ directory (git-ignored), so that it survives
// test runs.
func MuslBusyboxDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "build", "musl-busybox"), nil
}

// BuildMuslBusybox runs test/musl-busybox/build.sh dir (cached: a no-op when
// dir already holds a binary built by the same script) and returns the path
// of the static musl busybox: Debian's busybox source package built with
// musl-gcc, i.e. Alpine's userland. A cold build needs root (apt-get source)
// and takes about 40 s.
func BuildMuslBusybox(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := runCombined(ctx, root, "sh", filepath.Join(root, "test", "musl-busybox", "build.sh"), dir)
	if err != nil {
		return "", fmt.Errorf("build musl busybox: %w\n%s", err, out)
	}
	bin := filepath.Join(dir, "busybox")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("build musl busybox: %w", err)
	}
	return bin, nil
}

// MuslApplets are the applet links InstallMuslBusybox makes next to the
// musl busybox.
var MuslApplets = []string{"sh", "nproc", "free", "uptime", "top", "cat", "head", "sleep"}

// InstallMuslBusybox copies the musl busybox bin into rootfs at
// /musl/bin/busybox, with its applets (MuslApplets) linked beside it, so
// /musl/bin/nproc is musl's and /bin/nproc stays Debian's glibc busybox.
func InstallMuslBusybox(rootfs, bin string) error {
	dir := filepath.Join(rootfs, "musl", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyFile(bin, filepath.Join(dir, "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range MuslApplets {
		link := filepath.Join(dir, a)
		_ = os.Remove(link)
		if err := os.Symlink("busybox", link); err != nil {
			return err
		}
	}
	return nil
}

// BuildGlibcProbe compiles test/probe/probe.c with the host's gcc against
// glibc, statically, to out. The same source as the musl /probe: the
// difference between the two is the libc's.
func BuildGlibcProbe(out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	src := filepath.Join(root, "test", "probe", "probe.c")
	if o, err := runCombined(ctx, root, "gcc", "-static", "-O2", "-Wall", "-o", out+".tmp", src); err != nil {
		return fmt.Errorf("gcc -static probe.c (needs gcc and libc6-dev): %w\n%s", err, o)
	}
	return os.Rename(out+".tmp", out)
}

// GoTool returns the go command: the one on PATH, else /usr/local/go/bin/go.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go"
	}
	return "go"
}

// BuildGoMaxprocs builds test/consumers/gomaxprocs as a static binary out
// from a module of its own whose go.mod says `go goLine` (e.g. "1.24" or
// "1.26"), with the installed toolchain only (GOTOOLCHAIN=local). The go
// line picks the runtime's GODEBUG defaults: container-aware GOMAXPROCS
// exists from go 1.25 on. work is a scratch directory for the module.
func BuildGoMaxprocs(goLine, work, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	src, err := os.ReadFile(filepath.Join(root, "test", "consumers", "gomaxprocs", "main.go"))
	if err != nil {
		return err
	}
	mod := filepath.Join(work, "gomaxprocs-go"+goLine)
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return err
	}
	gomod := fmt.Sprintf("module example.com/gomaxprocs\n\ngo %s\n", goLine)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), src, 0o644); err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(absOut), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, GoTool(), "build", "-trimpath", "-o", absOut, ".")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build gomaxprocs (go %s): %w\n%s", goLine, err, o)
	}
	return nil
}

// CompileJavaProbe compiles test/consumers/java/Probe.java into outDir with
// the compiler module of the host's JDK/JRE (`java -m jdk.compiler/...`:
// Debian's openjdk-17-jre-headless ships it, no javac needed). java is the
// java command to use.
func CompileJavaProbe(java, outDir string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	src := filepath.Join(root, "test", "consumers", "java", "Probe.java")
	o, err := runCombined(ctx, root, java, "-m", "jdk.compiler/com.sun.tools.javac.Main",
		"-d", outDir, src)
	if err != nil {
		return fmt.Errorf("compile Probe.java with %s: %w\n%s", java, err, o)
	}
	return nil
}

// copyFile copies src to dst (through a temporary file) with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// errMissing marks a consumer program that is not installed on the host.
var errMissing = errors.New("not installed")

// HostProgram returns path when it exists on the host (under HostRoot,
// following symlinks such as /usr/bin/java -> /etc/alternatives/java),
// else an error saying which Debian package provides it.
func HostProgram(path, debPackage string) (string, error) {
	if _, err := HostPath(path); err != nil {
		return "", fmt.Errorf("%s %w: install the Debian package %s (make deps)", path, errMissing, debPackage)
	}
	return path, nil
}

// Trim shortens s for messages.
func Trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// The consumer rootfs: the test rootfs plus every program of the consumer
// matrix that the test builds, at these paths, and the mount points for the
// host's /usr (HostProgramMounts) from which python3, node and java run.
const (
	ConsumerMuslBin    = "/musl/bin/"            // musl busybox and its applets
	ConsumerGlibcProbe = "/glibc/probe"          // test/probe/probe.c, static glibc
	ConsumerGo124      = "/go/gomaxprocs-go1.24" // go.mod `go 1.24`
	ConsumerGo126      = "/go/gomaxprocs-go1.26" // go.mod `go 1.26`
	ConsumerJava       = "/java"                 // Probe.class
	ConsumerPython     = "/consumers/probe.py"
	ConsumerNode       = "/consumers/probe.js"
	// HostJava is the java the probe is compiled with and run by.
	HostJava = "/usr/bin/java"
)

// EnvConsumerRootfs is the path of a rootfs made by BuildConsumerRootfs,
// for a test binary that runs where nothing can be built (the VM tier).
const EnvConsumerRootfs = "SECCOMPAGENT_E2E_CONSUMER_ROOTFS"

// ConsumerRootfs is a consumer rootfs and what did not go into it: each
// program the matrix builds has its own error, so that one missing
// toolchain costs only its rows.
type ConsumerRootfs struct {
	Dir   string
	Err   error // the rootfs itself, the scripts and the mount points
	Musl  error // musl busybox (cold build: apt-get source + ~40 s)
	Glibc error
	Go    error
	Java  error
}

// BuildConsumerRootfs builds the consumer rootfs into dir (work is a
// scratch directory for the Go builds).
func BuildConsumerRootfs(dir, work string) ConsumerRootfs {
	c := ConsumerRootfs{Dir: dir}
	if c.Err = BuildRootfs(dir); c.Err != nil {
		return c
	}
	if cache, err := MuslBusyboxDir(); err != nil {
		c.Musl = err
	} else if bin, err := BuildMuslBusybox(cache); err != nil {
		c.Musl = err
	} else {
		c.Musl = InstallMuslBusybox(dir, bin)
	}
	c.Glibc = BuildGlibcProbe(filepath.Join(dir, ConsumerGlibcProbe))
	if c.Go = BuildGoMaxprocs("1.24", work, filepath.Join(dir, ConsumerGo124)); c.Go == nil {
		c.Go = BuildGoMaxprocs("1.26", work, filepath.Join(dir, ConsumerGo126))
	}
	if _, err := HostProgram(HostJava, "openjdk-17-jre-headless"); err != nil {
		c.Java = err
	} else {
		c.Java = CompileJavaProbe(HostJava, filepath.Join(dir, ConsumerJava))
	}
	root, err := ModuleRoot()
	if err != nil {
		c.Err = err
		return c
	}
	for src, dst := range map[string]string{"python/probe.py": ConsumerPython, "node/probe.js": ConsumerNode} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, dst)), 0o755); err != nil {
			c.Err = err
			return c
		}
		if err := copyFile(filepath.Join(root, "test", "consumers", src), filepath.Join(dir, dst), 0o644); err != nil {
			c.Err = err
			return c
		}
	}
	_, c.Err = HostProgramMounts(dir)
	return c
}

// PrebuiltConsumerRootfs returns the rootfs $SECCOMPAGENT_E2E_CONSUMER_ROOTFS
// names, if set, with an error for each program it lacks.
func PrebuiltConsumerRootfs() (ConsumerRootfs, bool) {
	p := os.Getenv(EnvConsumerRootfs)
	if p == "" {
		return ConsumerRootfs{}, false
	}
	c := ConsumerRootfs{Dir: p}
	has := func(rel string) error {
		if _, err := os.Stat(filepath.Join(p, rel)); err != nil {
			return fmt.Errorf("%s=%s has no %s (made by harness.BuildConsumerRootfs?): %w", EnvConsumerRootfs, p, rel, err)
		}
		return nil
	}
	c.Err = errors.Join(has("bin/busybox"), has(ConsumerPython), has(ConsumerNode))
	c.Musl = has(ConsumerMuslBin + "busybox")
	c.Glibc = has(ConsumerGlibcProbe)
	c.Go = errors.Join(has(ConsumerGo124), has(ConsumerGo126))
	c.Java = has(ConsumerJava + "/Probe.class")
	return c, true
}

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KernelCmdline: serial console, cgroup v1 disabled entirely (a pure v2
// host), qemu exits on a panic (panic=-1 reboots at once, -no-reboot turns
// that into an exit). mitigations=off saves emulated cycles on every
// syscall of a throwaway test VM. syscall.x32=y and secretmem.enable=1 turn
// on what Debian's 6.1 builds in but leaves off by default (the x32 ABI,
// memfd_secret), so that the notify kernel tests compare the agent with a
// kernel that has them, where the host (6.18, no x32 ABI) covers the other
// side.
const KernelCmdline = "console=ttyS0 cgroup_no_v1=all panic=-1 mitigations=off syscall.x32=y secretmem.enable=1"

// BootOptions describe one VM run.
type BootOptions struct {
	Qemu       string // qemu-system-x86_64
	Kernel     string
	Initramfs  string
	ResultsDir string // shared read-write as 9p tag "results"
	// HostUsr is shared read-only as 9p tag "hostusr" (the host's /usr,
	// for the consumer matrix's interpreters); "" shares nothing.
	HostUsr    string
	ConsoleLog string // the serial console
	QemuLog    string // qemu's own stdout/stderr
	CPUs       int
	MemoryMiB  int
	// Cmdline is added to KernelCmdline.
	Cmdline string
	Timeout time.Duration
	// Silence: a console that does not grow for this long means the
	// guest is stuck (its init prints a heartbeat every 15 s); qemu is
	// killed and Boot returns ErrStalled. 0 disables the check.
	Silence time.Duration
}

// ErrTimeout is returned by Boot when the VM was killed at the deadline.
var ErrTimeout = errors.New("VM timed out and was killed")

// ErrStalled is returned by Boot when the guest went silent (see
// BootOptions.Silence) and was killed. Under TCG a guest now and then stops
// making progress altogether (no heartbeat, no timer: a lost interrupt);
// nothing the tests do can cause or cure it, so the caller boots again.
var ErrStalled = errors.New("VM went silent (no console output) and was killed")

// Boot runs qemu (TCG, no KVM) until the guest powers off, the kernel
// panics, or Timeout passes; then the qemu process it started is killed by
// its pid.
func Boot(ctx context.Context, o BootOptions) (time.Duration, error) {
	args := []string{
		"-accel", "tcg,thread=multi",
		"-cpu", "max",
		"-M", "q35",
		"-smp", strconv.Itoa(o.CPUs),
		"-m", strconv.Itoa(o.MemoryMiB),
		"-nodefaults", "-display", "none", "-monitor", "none",
		"-serial", "file:" + o.ConsoleLog,
		"-no-reboot",
		"-kernel", o.Kernel,
		"-initrd", o.Initramfs,
		"-append", strings.TrimSpace(KernelCmdline + " " + o.Cmdline),
		// The results share. ioeventfd=off: the guest's virtqueue kicks are
		// handled synchronously instead of being handed to qemu's main loop
		// (sporadically lost virtio kicks have been seen under TCG with
		// ioeventfd, leaving a guest writer blocked forever).
		"-fsdev", "local,id=results,security_model=none,path=" + o.ResultsDir,
		"-device", "virtio-9p-pci,fsdev=results,mount_tag=results,ioeventfd=off",
	}
	if o.HostUsr != "" {
		args = append(args,
			"-fsdev", "local,id=hostusr,security_model=none,readonly=on,path="+o.HostUsr,
			"-device", "virtio-9p-pci,fsdev=hostusr,mount_tag=hostusr,ioeventfd=off")
	}
	for _, p := range []string{o.ResultsDir, o.HostUsr} {
		if strings.Contains(p, ",") {
			return 0, fmt.Errorf("shared directory %q contains a comma, which qemu cannot take", p)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	logf, err := os.Create(o.QemuLog)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, o.Qemu, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = filepath.Dir(o.ResultsDir)
	// If the test binary dies, its VM dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(logf, "%s %s\n", o.Qemu, strings.Join(args, " "))
	start := time.Now()
	var stalled bool
	if o.Silence > 0 {
		done := make(chan struct{})
		defer close(done)
		go func() {
			last, since := int64(-1), time.Now()
			t := time.NewTicker(min(5*time.Second, o.Silence/4))
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				if st, err := os.Stat(o.ConsoleLog); err == nil && st.Size() != last {
					last, since = st.Size(), time.Now()
				} else if time.Since(since) > o.Silence {
					stalled = true
					cancel()
					return
				}
			}
		}()
	}
	// On the deadline CommandContext kills exactly this process (its pid).
	err = cmd.Run()
	took := time.Since(start)
	if stalled {
		return took, fmt.Errorf("%w after %v (silent for %v)", ErrStalled, took.Round(time.Second), o.Silence)
	}
	if ctx.Err() != nil {
		return took, fmt.Errorf("%w after %v", ErrTimeout, took.Round(time.Second))
	}
	if err != nil {
		return took, fmt.Errorf("qemu: %w", err)
	}
	return took, nil
}

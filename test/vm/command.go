package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Paths inside the VM of what Builder puts in every image, for a command
// run with RunCommand.
const (
	GuestAgent  = "/" + vmAgent
	GuestRootfs = "/" + vmRootfs
)

// CommandOptions describe one VM run of a single command instead of the
// test groups (init.sh: VM_COMMAND).
type CommandOptions struct {
	Qemu  string
	Image *Image
	// Dir receives run/ (the 9p share), console.log and qemu.log.
	Dir string
	// Command is a sh command line run in the guest as root, in /tmp,
	// with CI unset. Its stdout is CommandResult.Output; its stderr goes
	// to the console (and so to Progress); files it writes into the
	// directory $VM_RESULTS names end up in Dir/run.
	Command   string
	CPUs      int
	MemoryMiB int
	Cmdline   string // see BootOptions
	Timeout   time.Duration
	// Silence: see BootOptions. The guest's init prints a heartbeat
	// every 15 s.
	Silence time.Duration
	// Progress, if set, is given every console line the guest prints
	// from stage 2 of its init on, while it runs.
	Progress func(line string)
}

// CommandResult is what a RunCommand run left in the results share.
type CommandResult struct {
	Output   string // the command's stdout
	ExitCode int
	Took     time.Duration // qemu's wall time, boot and poweroff included
	Info     string        // vm-info: kernel, controllers, CPUs
	Attempts int
}

// RunCommand boots the image and runs o.Command in it (on a pure cgroup v2
// host, like the test groups). A guest that stalls under TCG (ErrStalled)
// is booted once more, as TestCgroupV2VM does.
func RunCommand(ctx context.Context, o CommandOptions) (*CommandResult, error) {
	if o.Image == nil {
		return nil, errors.New("RunCommand: no image")
	}
	run := filepath.Join(o.Dir, "run")
	if err := os.RemoveAll(run); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, err
	}
	env := fmt.Sprintf("VM_COMMAND=%s\n", shellQuote(o.Command))
	if err := os.WriteFile(filepath.Join(run, "vm.env"), []byte(env), 0o644); err != nil {
		return nil, err
	}
	console := filepath.Join(o.Dir, "console.log")
	opts := BootOptions{
		Qemu:       o.Qemu,
		Kernel:     o.Image.Kernel.Image,
		Initramfs:  o.Image.Initramfs,
		ResultsDir: run,
		ConsoleLog: console,
		QemuLog:    filepath.Join(o.Dir, "qemu.log"),
		CPUs:       o.CPUs,
		MemoryMiB:  o.MemoryMiB,
		Cmdline:    o.Cmdline,
		Silence:    o.Silence,
	}
	res := &CommandResult{}
	start := time.Now()
	var err error
	for res.Attempts = 1; ; res.Attempts++ {
		opts.Timeout = o.Timeout - time.Since(start)
		res.Took, err = bootFollowing(ctx, opts, o.Progress)
		if !errors.Is(err, ErrStalled) || res.Attempts == 2 {
			break
		}
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("(host) %v: booting again", err))
		}
		_ = os.Rename(console, filepath.Join(o.Dir, "console-stalled.log"))
	}
	info, _ := os.ReadFile(filepath.Join(run, "vm-info"))
	res.Info = string(info)
	if err != nil {
		return res, fmt.Errorf("%w (console: %s)", err, console)
	}
	out, err := os.ReadFile(filepath.Join(run, "command.out"))
	if err != nil {
		return res, fmt.Errorf("the VM left no command output (console: %s): %w", console, err)
	}
	res.Output = string(out)
	code, err := os.ReadFile(filepath.Join(run, "exit-code"))
	if err != nil {
		return res, fmt.Errorf("the VM wrote no exit code (console: %s): %w", console, err)
	}
	if res.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(code))); err != nil {
		return res, fmt.Errorf("exit-code %q: %w", code, err)
	}
	return res, nil
}

// bootFollowing is Boot, handing every new complete console line after
// init's stage 2 began to progress meanwhile (kernel boot messages are
// left out).
func bootFollowing(ctx context.Context, o BootOptions, progress func(string)) (time.Duration, error) {
	if progress == nil {
		return Boot(ctx, o)
	}
	_ = os.Remove(o.ConsoleLog)
	done := make(chan struct{})
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		f := &consoleFollower{emit: progress}
		for {
			stop := false
			select {
			case <-done:
				stop = true
			case <-time.After(500 * time.Millisecond):
			}
			if data, err := os.ReadFile(o.ConsoleLog); err == nil {
				f.feed(data)
			}
			if stop {
				return
			}
		}
	}()
	took, err := Boot(ctx, o)
	close(done)
	<-followed
	return took, err
}

// consoleFollower turns successive snapshots of a growing console log into
// lines, each emitted once, starting at init's stage 2.
type consoleFollower struct {
	emit    func(string)
	off     int
	started bool
}

func (f *consoleFollower) feed(data []byte) {
	if len(data) < f.off {
		f.off, f.started = 0, false // a new file: the guest booted again
	}
	for {
		i := bytes.IndexByte(data[f.off:], '\n')
		if i < 0 {
			return
		}
		line := strings.TrimRight(string(data[f.off:f.off+i]), "\r")
		f.off += i + 1
		if !f.started && strings.HasPrefix(line, "vm-init: stage 2") {
			f.started = true
		}
		if f.started {
			f.emit(line)
		}
	}
}

// shellQuote quotes s for sh (the VM's init sources vm.env).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

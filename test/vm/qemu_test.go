package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBootSilenceWatchdog: a "qemu" that prints once and then hangs is
// killed as stalled, well before its timeout.
func TestBootSilenceWatchdog(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	// The serial console is the file named in "-serial file:PATH".
	script := `#!/bin/sh
for a in "$@"; do case "$a" in file:*) out=${a#file:} ;; esac; done
echo booting >"$out"
exec sleep 600
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Boot(context.Background(), BootOptions{Qemu: fake, ResultsDir: run,
		ConsoleLog: filepath.Join(dir, "console.log"), QemuLog: filepath.Join(dir, "qemu.log"),
		CPUs: 1, MemoryMiB: 64, Timeout: time.Minute, Silence: 2 * time.Second})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("stall detected after %v", took)
	}
}

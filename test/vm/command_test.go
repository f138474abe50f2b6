package vm

import (
	"slices"
	"testing"
)

// TestConsoleFollower: growing snapshots of the console yield each
// complete line once, from init's stage 2 on; a partial line waits for
// its newline.
func TestConsoleFollower(t *testing.T) {
	var got []string
	f := &consoleFollower{emit: func(l string) { got = append(got, l) }}
	snapshots := []string{
		"[    0.0] Linux version 6.1\n",
		"[    0.0] Linux version 6.1\nvm-init: stage 2 at uptime 2.2\nvm-bench: rou",
		"[    0.0] Linux version 6.1\nvm-init: stage 2 at uptime 2.2\nvm-bench: round 1\r\n",
		"[    0.0] Linux version 6.1\nvm-init: stage 2 at uptime 2.2\nvm-bench: round 1\r\n[   9.1] a kernel line\n",
		"[    0.0] Linux\nvm-init: stage 2 at uptime 2.0\n", // the console of a second boot
	}
	for _, s := range snapshots {
		f.feed([]byte(s))
	}
	want := []string{"vm-init: stage 2 at uptime 2.2", "vm-bench: round 1", "[   9.1] a kernel line", "vm-init: stage 2 at uptime 2.0"}
	if !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

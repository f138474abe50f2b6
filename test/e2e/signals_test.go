package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// flagWaitKillableRecv is what `seccompagent inject` adds where kernel and
// runtime take it (oci-hook; not imported: this package builds without cgo).
const flagWaitKillableRecv = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"

// storm is one run of /storm (test/probe/storm.c).
type storm struct {
	calls, ok, eintr, other, late, host, alarms int64
}

func parseStorm(out string) (storm, error) {
	var s storm
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "calls=") {
			continue
		}
		_, err := fmt.Sscanf(line, "calls=%d ok=%d eintr=%d other=%d late=%d host=%d alarms=%d",
			&s.calls, &s.ok, &s.eintr, &s.other, &s.late, &s.host, &s.alarms)
		return s, err
	}
	return s, fmt.Errorf("no storm line in %q", out)
}

// TestSignalStorm: SIGALRM every 100 µs (handler without SA_RESTART) while
// the container calls sysinfo in a loop. The kernel's own run (no agent, same
// runtime) never returns EINTR and never writes late. With the agent:
//
//   - where `seccompagent inject` could request
//     SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (crun >= 1.8, kernel >= 5.19), a
//     received notification waits killably: no answer may land after its
//     call returned. Calls interrupted before the agent received them still
//     return EINTR (the kernel withdraws them; the real syscall would not);
//   - without it (runc 1.1), a signal can end the call while its answer is
//     being written. The agent re-validates the id right before writing,
//     which narrows that to the gap between two syscalls; what remains is
//     reported, not asserted.
func TestSignalStorm(t *testing.T) {
	const seconds = "3"
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			run := func(listener string) (storm, []string, string) {
				t.Helper()
				b, err := harness.NewBundle(t.TempDir(), rootfsDir, harness.BundleOptions{
					Args:         []string{"/storm", seconds, fmt.Sprint(memLimit)},
					MemoryLimit:  memLimit,
					ListenerPath: listener,
				})
				if err != nil {
					t.Fatal(err)
				}
				injected := ""
				if listener != "" {
					// The product's path: inject decides the flag for rt.
					out, err := exec.Command(agentBin, "inject", "--bundle", b.Dir, "--socket", listener, "--runtime", string(rt)).CombinedOutput()
					if err != nil {
						t.Fatalf("seccompagent inject: %v\n%s", err, out)
					}
					injected = string(out)
				}
				flags := seccompFlags(t, b.ConfigPath())
				ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
				defer cancel()
				stdout, stderr, err := rt.Run(ctx, b, "storm-"+harness.UniqueID())
				if err != nil {
					t.Fatalf("%s container failed: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(a))
				}
				s, err := parseStorm(stdout)
				if err != nil {
					t.Fatal(err)
				}
				return s, flags, injected
			}

			native, _, _ := run("")
			t.Logf("kernel alone: %+v", native)
			if native.late != 0 || native.eintr != 0 || native.calls == 0 {
				t.Fatalf("the kernel alone: %+v; want calls, no EINTR and no late writes (the detector is wrong)", native)
			}
			s, flags, injected := run(a.Socket)
			killable := slices.Contains(flags, flagWaitKillableRecv)
			t.Logf("with the agent (%s %v): %+v", flagWaitKillableRecv, killable, s)
			if s.calls == 0 || s.alarms == 0 {
				t.Fatalf("nothing measured: %+v", s)
			}
			if s.other != 0 {
				t.Errorf("%d calls failed with an errno other than EINTR", s.other)
			}
			if s.host != 0 {
				t.Errorf("%d successful calls got the host's totalram, not the container's", s.host)
			}
			switch {
			case killable:
				if s.late != 0 {
					t.Errorf("%d answers landed after their call returned, with %s", s.late, flagWaitKillableRecv)
				}
			case rt == harness.Crun:
				// crun 1.8.1 takes the flag: only a kernel without it
				// (< 5.19) may leave it out.
				if !strings.Contains(injected, "the kernel lacks it") {
					t.Fatalf("inject did not request %s for crun:\n%s", flagWaitKillableRecv, injected)
				}
				testenv.SkipWithoutKernelFeature(t, false, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", strings.TrimSpace(injected))
			default:
				t.Logf("%s cannot take %s: %d of %d calls returned EINTR, %d answers landed after their call returned (reported, not asserted)",
					rt, flagWaitKillableRecv, s.eintr, s.calls, s.late)
			}
		})
	}
}

// seccompFlags reads linux.seccomp.flags from a config.json.
func seccompFlags(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Linux struct {
			Seccomp *struct {
				Flags []string `json:"flags"`
			} `json:"seccomp"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Linux.Seccomp == nil {
		return nil
	}
	return c.Linux.Seccomp.Flags
}

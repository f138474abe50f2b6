package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/seccompagent/seccompagent/test/harness"
)

// TestCPUsAnnotation: seccompagent.io/cpus picks the policy per container,
// and an invalid value falls back to the quota (with a warning in the log).
func TestCPUsAnnotation(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	hostCPUs, err := harness.HostOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t)
	cases := []struct {
		value string
		want  int
	}{
		{"off", hostCPUs},          // the kernel's mask
		{"quota", wantCPUs},        // quota 50000/100000 -> 1
		{"64", hostCPUs},           // never more than the real mask
		{"not-a-number", wantCPUs}, // invalid: logged, quota
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			b, err := harness.NewBundle(t.TempDir(), rootfsDir, harness.BundleOptions{
				Args:         []string{"nproc"},
				MemoryLimit:  memLimit,
				CPUQuota:     cpuQuota,
				CPUPeriod:    cpuPeriod,
				ListenerPath: a.Socket,
				Annotations:  map[string]string{"seccompagent.io/cpus": tc.value},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			out, stderr, err := rt.Run(ctx, b, "e2e-"+harness.UniqueID())
			if err != nil {
				t.Fatalf("container: %v\n%s%s", err, stderr, agentLog(a))
			}
			n, err := harness.ParseNproc(out)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Errorf("seccompagent.io/cpus=%s: nproc = %d, want %d%s", tc.value, n, tc.want, agentLog(a))
			}
		})
	}
	if !strings.Contains(a.Logs(), `invalid seccompagent.io/cpus=\"not-a-number\"`) {
		t.Errorf("no warning about the invalid annotation in the agent log%s", agentLog(a))
	}
}

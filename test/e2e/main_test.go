// Package e2e is test tier 3: real runc and crun containers limited to
// 256 MiB and half a CPU, with and without the agent, running busybox
// (nproc, free, uptime) and the musl probe. Needs root, runc, crun,
// musl-gcc, gcc-multilib, busybox-static and unshare; outside CI a missing
// prerequisite skips, under CI=true it fails.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// Built once per test binary by TestMain (when running as root).
var (
	workDir   string
	rootfsDir string
	rootfsErr error
	agentBin  string
	agentErr  error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "seccompagent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if os.Geteuid() == 0 {
		// Build failures are reported by the tests that need the result,
		// so the control tests still run when the agent does not build.
		// $SECCOMPAGENT_E2E_ROOTFS / $SECCOMPAGENT_E2E_AGENT: prebuilt (VM tier).
		rootfsDir, rootfsErr = harness.TestRootfs(filepath.Join(workDir, "rootfs"))
		agentBin, agentErr = harness.AgentBinary(filepath.Join(workDir, "bin"))
	}
	code := m.Run()
	harness.RemoveCgroupParent()
	return code
}

// requireE2E skips (fails under CI=true) unless this is root with every tool
// the tier needs, and fails if the rootfs did not build.
func requireE2E(t *testing.T, rt harness.Runtime) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, string(rt))
	if !harness.PrebuiltRootfs() {
		testenv.RequireCommand(t, "musl-gcc")
		testenv.RequireCommand(t, "gcc") // gcc -m32 (gcc-multilib) for /affinity32
	}
	if rt == harness.Crun && !harness.CgroupUnified() {
		testenv.RequireCommand(t, "unshare")
	}
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found: install busybox-static (`make deps`)")
	if rootfsErr != nil {
		t.Fatalf("test rootfs did not build: %v", rootfsErr)
	}
}

// requireAgent fails the test when the agent binary did not build.
func requireAgent(t *testing.T) string {
	t.Helper()
	if agentErr != nil {
		t.Fatalf("agent did not build, so it cannot be tested (expected while cmd/seccompagent is unfinished): %v", agentErr)
	}
	return agentBin
}

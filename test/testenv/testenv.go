// Package testenv decides whether a test tier can run here. Outside CI a tier
// whose prerequisites are missing is skipped with the reason; under CI=true a
// required tier that cannot run is a failure, never a silent skip.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI=true.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips (or, under CI=true, fails) t unless ok. why says what is
// missing and how to get it.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("required test tier cannot run under CI=true: %s", why)
	}
	t.Skip(why)
}

// RequireRoot requires uid 0 (the end-to-end tiers create cgroups and containers).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root: run `make test` as root")
}

// RequireCommand requires an executable on PATH and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" not found on PATH: run `make deps`")
	return p
}

// SkipWithoutKernelFeature skips t unless the running kernel has feature (a
// kernel config option, a boot parameter or a kernel version: nothing a
// package can install). Unlike Require it skips even under CI=true, naming
// the feature, because no machine setup can fix it; every test that uses it
// must therefore also run in the VM tier, whose kernel is known to have the
// feature, and be required to PASS there. detail says how the absence was
// seen.
func SkipWithoutKernelFeature(t testing.TB, have bool, feature, detail string) {
	t.Helper()
	if have {
		return
	}
	t.Skipf("kernel feature %s absent (%s)", feature, detail)
}

package main

import (
	"strings"
	"testing"

	"github.com/seccompagent/seccompagent/limits"
)

func TestExplainTextOnFixture(t *testing.T) {
	r, err := limits.NewReader("../../limits/testdata/v2/proc", "../../limits/testdata/v2")
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.View(300)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := renderExplain(&b, v); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"cgroups v2",
		"quota 50000/100000 us, limited by ../../limits/testdata/v2/sys/fs/cgroup/kubepods/pod1/cpu.max (1 level up, cgroup /kubepods/pod1)",
		"256 MiB", "2 GiB",
		"no swap limit: the host's swap",
		"tasks (procs)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainNeedsPid(t *testing.T) {
	var out, errOut strings.Builder
	if err := runExplain(nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--pid") {
		t.Fatalf("err = %v, want a message asking for --pid", err)
	}
}

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// guestOutput is what runGuest prints for medians[sup/call] = per-round values.
func guestOutput(header string, rounds int, medians map[string][]float64) string {
	var sb strings.Builder
	sb.WriteString(header)
	for r := 0; r < rounds; r++ {
		for _, call := range []string{"sysinfo", "affinity"} {
			for _, sup := range []string{"native", "agent", "ref-plain", "ref-plain+counters"} {
				if v, ok := medians[sup+"/"+call]; ok && r < len(v) {
					fmt.Fprintf(&sb, "tight round=%d sup=%s call=%s median_ns=%.0f\n", r+1, sup, call, v[r])
				}
			}
		}
	}
	return sb.String()
}

func TestParseGuest(t *testing.T) {
	const header = "kernel=6.1.0-57-amd64\nmode=plain\ncgroup=v2\ncpus=2\n"
	full := map[string][]float64{
		"native/sysinfo": {3000, 2800}, "agent/sysinfo": {600000, 500000}, "ref-plain/sysinfo": {400000, 450000},
		"native/affinity": {2000, 2100}, "agent/affinity": {300000, 330000}, "ref-plain/affinity": {250000, 300000},
		"ref-plain+counters/sysinfo": {450000, 460000},
	}
	g, err := parseGuest("noise without an equals sign\n" + guestOutput(header, 2, full))
	if err != nil {
		t.Fatal(err)
	}
	if g.label() != "6.1 VM (plain)" || g.cgroup != "v2" || g.cpus != 2 {
		t.Errorf("label %q, cgroup %q, cpus %d", g.label(), g.cgroup, g.cpus)
	}
	if _, ok := g.average(g.agentCPU, "agent/sysinfo"); ok {
		t.Errorf("an agent CPU time parsed where the guest printed none")
	}
	if b := g.best("agent/sysinfo"); b != 500000 {
		t.Errorf("best agent/sysinfo = %v, want the smaller median 500000", b)
	}
	// Per-round ratios 1.5 and 500000/450000.
	if lo, hi := g.spread("agent/sysinfo", "ref-plain/sysinfo"); lo != 500000.0/450000 || hi != 1.5 {
		t.Errorf("spread = %v–%v", lo, hi)
	}

	extra := "tight round=1 sup=agent call=sysinfo median_ns=7 mean_ns=9 agent_cpu_ns=3000\n" +
		"tight round=2 sup=agent call=sysinfo median_ns=8 mean_ns=11 agent_cpu_ns=5000\n"
	all := map[string][]float64{}
	for k, v := range full {
		if k != "agent/sysinfo" {
			all[k] = v
		}
	}
	g, err = parseGuest(guestOutput(header, 2, all) + extra)
	if err != nil {
		t.Fatal(err)
	}
	if cpu, _ := g.average(g.agentCPU, "agent/sysinfo"); cpu != 4000 {
		t.Errorf("agent CPU = %v, want the mean of 3000 and 5000", cpu)
	}
	if mean, _ := g.average(g.means, "agent/sysinfo"); mean != 10 {
		t.Errorf("mean = %v, want 10", mean)
	}

	short := map[string][]float64{}
	for k, v := range full {
		short[k] = v
	}
	short["agent/affinity"] = full["agent/affinity"][:1]
	noCounters := map[string][]float64{}
	for k, v := range full {
		if k != "ref-plain+counters/sysinfo" {
			noCounters[k] = v
		}
	}
	for name, out := range map[string]string{
		"no header":       guestOutput("", 2, full),
		"sync ref absent": guestOutput(strings.Replace(header, "plain", "sync", 1), 2, full),
		"a round missing": guestOutput(header, 2, short),
		"counters absent": guestOutput(header, 2, noCounters),
		"bad median":      header + "tight round=1 sup=agent call=sysinfo median_ns=x\n",
		"round skipped":   header + "tight round=2 sup=agent call=sysinfo median_ns=5\n",
		"nothing ran":     header,
	} {
		if _, err := parseGuest(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSelection(t *testing.T) {
	for _, c := range []struct {
		only, skip string
		want       map[string]bool
	}{
		{"", "", map[string]bool{"tight": true, "vm": true}},
		{"", "vm", map[string]bool{"tight": true, "vm": false}},
		{"vm", "", map[string]bool{"tight": false, "vm": true}},
		{"tight,vm", "vm", map[string]bool{"tight": true, "vm": false}},
	} {
		want, err := selection(c.only, c.skip)
		if err != nil {
			t.Fatal(err)
		}
		for s, w := range c.want {
			if want(s) != w {
				t.Errorf("-only %q -skip %q: %s = %v", c.only, c.skip, s, !w)
			}
		}
	}
	if _, err := selection("tight,vms", ""); err == nil {
		t.Error("-only vms: no error")
	}
	if _, err := selection("", "bogus"); err == nil {
		t.Error("-skip bogus: no error")
	}
}

func TestParseProcStatBusy(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 0 40 0\ncpu0 50 2 25 500 10 1 1 0 20 0\n"
	got, err := parseProcStatBusy(stat, 100)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal = 160 ticks of 10 ms; guest
	// time (40) is part of user already, idle and iowait are not busy.
	if want := 1600 * time.Millisecond; got != want {
		t.Errorf("busy = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseProcStatBusy(bad, 100); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := parseProcStatBusy(stat, 0); err == nil {
		t.Error("no tick rate: no error")
	}
	// This process's own auxv names the tick rate.
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		t.Skipf("no /proc/self/auxv: %v", err)
	}
	if hz := clockTick(auxv); hz <= 0 {
		t.Errorf("AT_CLKTCK = %d", hz)
	}
}

// TestLockDir: a second lock on the same directory fails while the first
// is held, and succeeds once it is released.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); err == nil || !strings.Contains(err.Error(), "another bench") {
		t.Errorf("second lock: %v, want \"another bench\"", err)
	}
	unlock()
	again, err := lockDir(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}

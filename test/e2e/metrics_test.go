package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

// metricsAddrRE finds the address the agent serves metrics on in its log.
var metricsAddrRE = regexp.MustCompile(`msg="serving metrics at /metrics and health at /healthz" addr="?([0-9.]+:[0-9]+)`)

// startMetricsAgent starts bin (the agent, or a script that execs it) with
// --metrics on a free port and returns the agent and the metrics base URL.
func startMetricsAgent(t *testing.T, bin string) (*harness.Agent, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := harness.StartAgentWith(ctx, bin, filepath.Join(t.TempDir(), "agent.sock"),
		harness.AgentOptions{Args: []string{"--metrics", "127.0.0.1:0"}})
	if err != nil {
		t.Fatalf("agent did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stopping agent: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log (%s):\n%s", a.LogPath, a.Logs())
		}
	})
	m := metricsAddrRE.FindStringSubmatch(a.Logs())
	if m == nil {
		t.Fatalf("the agent logged no metrics address:\n%s", a.Logs())
	}
	return a, "http://" + m[1]
}

// scrape reads /metrics as "name{labels}" → value (the text format writes
// labels sorted by name, so a key is stable).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func healthz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// hammerCalls parses hammer's "calls=N ..." line into its fields.
func hammerCalls(t *testing.T, out string) map[string]int64 {
	t.Helper()
	f := map[string]int64{}
	for _, kv := range strings.Fields(out) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("hammer output %q: %v", out, err)
		}
		f[k] = n
	}
	if _, ok := f["calls"]; !ok {
		t.Fatalf("hammer printed no calls=: %q", out)
	}
	return f
}

// waitAttached waits until the agent's gauge of served listeners is want
// (a loop ends, and detaches, shortly after its container exits).
func waitAttached(t *testing.T, base string, want float64) map[string]float64 {
	t.Helper()
	var m map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m = scrape(t, base)
		if m["seccompagent_containers_attached"] == want || time.Now().After(deadline) {
			return m
		}
	}
}

// TestMetrics reads /metrics around a container whose process is hammer:
// it makes sysinfo and sched_getaffinity calls in pairs, as raw syscalls
// with nothing else under the filter, and prints how many. Every one of
// them must be in the counters (answered, none failed open), in the
// latency histogram, and the container must be attached while it runs.
func TestMetrics(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			agent, base := startMetricsAgent(t, requireAgent(t))
			if code, body := healthz(t, base); code != http.StatusOK || body != "ok" {
				t.Errorf("/healthz: %d %q, want 200 ok", code, body)
			}
			before := waitAttached(t, base, 0)

			b := limitedBundle(t, []string{"/hammer", "1", strconv.Itoa(memLimit), strconv.Itoa(wantCPUs)}, agent.Socket)
			ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
			defer cancel()
			id := "e2e-metrics-" + harness.UniqueID()
			type run struct {
				stdout, stderr string
				err            error
			}
			done := make(chan run, 1)
			go func() {
				o, e, err := rt.Run(ctx, b, id)
				done <- run{o, e, err}
			}()
			// While hammer runs (1 s), the container is attached.
			during := waitAttached(t, base, before["seccompagent_containers_attached"]+1)
			r := <-done
			if r.err != nil {
				t.Fatalf("container: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
			}
			h := hammerCalls(t, r.stdout)
			if h["enosys"] != 0 || h["errors"] != 0 || h["host"] != 0 || h["calls"] < 2 || h["calls"]%2 != 0 {
				t.Fatalf("hammer: %v", h)
			}
			after := waitAttached(t, base, before["seccompagent_containers_attached"])
			if got := during["seccompagent_containers_attached"] - before["seccompagent_containers_attached"]; got != 1 {
				t.Errorf("containers attached while hammer ran: +%v, want +1", got)
			}
			if got := after["seccompagent_containers_attached"]; got != before["seccompagent_containers_attached"] {
				t.Errorf("containers attached after the container exited: %v, want %v", got, before["seccompagent_containers_attached"])
			}

			each := float64(h["calls"] / 2)
			delta := func(key string) float64 { return after[key] - before[key] }
			for _, sc := range []string{"sysinfo", "sched_getaffinity"} {
				answered := fmt.Sprintf(`seccompagent_calls_total{outcome="answered",reason="",syscall="%s"}`, sc)
				if got := delta(answered); got != each {
					t.Errorf("%s: %v more, want %v (hammer: %v)", answered, got, each, h)
				}
				count := fmt.Sprintf(`seccompagent_call_duration_seconds_count{outcome="answered",syscall="%s"}`, sc)
				if got := delta(count); got != each {
					t.Errorf("%s: %v more, want %v", count, got, each)
				}
				// Every answer took more than 0 and less than the largest
				// bucket bound... or is in +Inf; the sum is positive.
				sum := fmt.Sprintf(`seccompagent_call_duration_seconds_sum{outcome="answered",syscall="%s"}`, sc)
				if delta(sum) <= 0 {
					t.Errorf("%s did not grow", sum)
				}
			}
			for k, v := range after {
				if strings.HasPrefix(k, "seccompagent_calls_total{") && strings.Contains(k, `outcome="continue"`) && v != before[k] {
					t.Errorf("%s: %v more, want none (no fail-open)", k, v-before[k])
				}
			}
			t.Logf("hammer made %d calls; /metrics counted them all (%v per syscall)", h["calls"], each)
		})
	}
}

// TestMisconfigurationWarning: an agent without CAP_SYS_PTRACE, and
// without a capability the container has (CAP_KILL), may not write into
// the container's memory with process_vm_writev (ptrace_may_access: the
// target's capabilities are not a subset of the agent's, EPERM). Every call fails
// open: the container sees the host, the counters say why, and the
// operator gets a Warn line at the default level, once, not one per call.
func TestMisconfigurationWarning(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	setpriv := testenv.RequireCommand(t, "setpriv")
	bin := requireAgent(t)
	script := filepath.Join(t.TempDir(), "seccompagent-without-ptrace")
	if err := os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\nexec %s --bounding-set=-sys_ptrace,-kill %s \"$@\"\n", setpriv, bin)), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script, "version").CombinedOutput(); err != nil {
		t.Fatalf("%s version: %v\n%s", script, err, out)
	}
	agent, base := startMetricsAgent(t, script)

	b := limitedBundle(t, []string{"/hammer", "1", strconv.Itoa(memLimit), strconv.Itoa(wantCPUs)}, agent.Socket)
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	stdout, stderr, err := rt.Run(ctx, b, "e2e-misconf-"+harness.UniqueID())
	if err != nil {
		t.Fatalf("container: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	h := hammerCalls(t, stdout)
	if h["enosys"] != 0 || h["errors"] != 0 || h["host"] != h["calls"] {
		t.Errorf("hammer %v: want every call answered by the kernel (host values), none failing", h)
	}
	m := waitAttached(t, base, 0)
	// Every call failed open. sched_getaffinity's answer could not be
	// written (reason write, EPERM); sysinfo's handler may give up
	// earlier, reading the caller's /proc files (reason handler).
	var failOpen float64
	var lines []string
	for k, v := range m {
		if strings.HasPrefix(k, "seccompagent_calls_total{") {
			lines = append(lines, fmt.Sprintf("%s %v", k, v))
			if strings.Contains(k, `outcome="continue"`) {
				failOpen += v
			}
		}
	}
	write := m[`seccompagent_calls_total{outcome="continue",reason="write",syscall="sched_getaffinity"}`]
	if failOpen != float64(h["calls"]) || write != float64(h["calls"]/2) {
		t.Errorf("fail-opens %v (want %d), sched_getaffinity with reason write %v (want %d):\n%s",
			failOpen, h["calls"], write, h["calls"]/2, strings.Join(lines, "\n"))
	}
	logs := agent.Logs()
	warns := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=warning") && strings.Contains(line, "fail-open: the agent may not write into containers' memory") {
			warns++
			if !strings.Contains(line, "reason=write") || !strings.Contains(line, "operation not permitted") {
				t.Errorf("warning line lacks the reason or the error: %s", line)
			}
		}
	}
	if warns != 1 {
		t.Errorf("%d misconfiguration warnings for %d fail-opens within a second, want exactly 1 (rate limited)", warns, h["calls"])
	}
}

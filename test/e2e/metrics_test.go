package e2e

import (
	"bufio"
	"context"
	"encoding/json"
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

// agentStatus is the part of `seccompagent status --json` (docs/status.md)
// the tests read; decoded here, not through package agent, so that the
// documented format is what is tested.
type agentStatus struct {
	Format   int  `json:"format"`
	Healthy  bool `json:"healthy"`
	SelfTest struct {
		State string `json:"state"`
		Cause string `json:"cause"`
	} `json:"self_test"`
	Kernel struct {
		Cgroups  string `json:"cgroups"`
		NrCPUIDs int    `json:"nr_cpu_ids"`
	} `json:"kernel"`
	Containers []struct {
		ID         string `json:"id"`
		InitPid    int    `json:"init_pid"`
		Runtime    string `json:"runtime"`
		Calls      uint64 `json:"calls"`
		FailOpens  uint64 `json:"fail_opens"`
		LastReason string `json:"last_fail_open"`
	} `json:"containers"`
}

// status runs `seccompagent status --json` against the agent and returns
// the status and the command's error (non-nil: exit status not 0).
func status(t *testing.T, bin string, a *harness.Agent) (agentStatus, error) {
	t.Helper()
	var st agentStatus
	out, err := exec.Command(bin, "status", "--json", "--socket", a.Socket).Output()
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("seccompagent status --json: %v (%v)\n%s", jerr, err, out)
	}
	if st.Format != 1 {
		t.Fatalf("status format %d, want 1", st.Format)
	}
	return st, err
}

// waitHealthy waits for /healthz to answer 200 (the self-test passed) and
// returns the status then.
func waitHealthy(t *testing.T, bin, base string, a *harness.Agent) agentStatus {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := healthz(t, base)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q after 15 s", code, body)
		}
	}
	st, err := status(t, bin, a)
	if err != nil || !st.Healthy || st.SelfTest.State != "passed" {
		t.Fatalf("status after /healthz said ok: %v, %+v", err, st)
	}
	return st
}

// TestMetrics reads /metrics and `seccompagent status` around a container
// that runs hammer (sysinfo and sched_getaffinity in pairs, raw syscalls,
// nothing else under the filter, then it prints how many) and then sleeps:
// every call must be in the counters (answered, none failed open), in the
// latency histogram, and in the container's line of the status listing;
// the container is attached while it runs and detached after.
func TestMetrics(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			bin := requireAgent(t)
			agent, base := startMetricsAgent(t, bin)
			waitHealthy(t, bin, base, agent)
			before := waitAttached(t, base, 0)
			if before["seccompagent_self_test_ok"] != 1 {
				t.Errorf("seccompagent_self_test_ok = %v, want 1", before["seccompagent_self_test_ok"])
			}

			b, id := startDetached(t, rt, agent, agent.Socket, "e2e-metrics-",
				"sh", "-c", fmt.Sprintf("/hammer 1 %d %d; exec sleep 3", memLimit, wantCPUs))
			var out string
			for deadline := time.Now().Add(containerTimeout); !strings.Contains(out, "calls="); time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no hammer result:\n%s", out)
				}
				out, _ = b.DetachedOutput(id)
			}
			h := hammerCalls(t, out)
			if h["enosys"] != 0 || h["errors"] != 0 || h["host"] != 0 || h["calls"] < 2 || h["calls"]%2 != 0 {
				t.Fatalf("hammer: %v", h)
			}
			// hammer is done and the container sleeps: it is attached,
			// and its counters are final.
			during := scrape(t, base)
			st, err := status(t, bin, agent)
			if err != nil {
				t.Errorf("status exit: %v", err)
			}
			found := 0
			for _, c := range st.Containers {
				if c.ID != id {
					continue
				}
				found++
				if c.Calls != uint64(h["calls"]) || c.FailOpens != 0 || c.LastReason != "" || c.InitPid <= 0 || c.Runtime != string(rt) {
					t.Errorf("status listing of %s: %+v; want %d calls, no fail-open, an init pid, runtime %s", id, c, h["calls"], rt)
				}
			}
			if found != 1 {
				t.Errorf("status lists container %s %d times, want once: %+v", id, found, st.Containers)
			}
			if got := during["seccompagent_containers_attached"] - before["seccompagent_containers_attached"]; got != 1 {
				t.Errorf("containers attached while the container runs: +%v, want +1", got)
			}
			after := waitAttached(t, base, before["seccompagent_containers_attached"])
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
			t.Logf("hammer made %d calls; /metrics and status counted them all", h["calls"])
		})
	}
}

// TestSelfTestFailsAndWarns: an agent without CAP_SYS_PTRACE, and without
// a capability the container has (CAP_KILL), may not write into the
// container's memory with process_vm_writev (ptrace_may_access: the
// target's capabilities are not a subset of the agent's, EPERM), nor into
// its own non-dumpable self-test child. The self-test fails loudly (an Error line naming the
// cause, seccompagent_self_test_ok 0, /healthz 503, status exit 1); the
// container's calls all fail open (it sees the host), the counters say
// why, and the operator gets one Warn line, not one per call.
func TestSelfTestFailsAndWarns(t *testing.T) {
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

	var st agentStatus
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err = status(t, bin, agent)
		if st.SelfTest.State != "running" || time.Now().After(deadline) {
			break
		}
	}
	if err == nil || st.Healthy || st.SelfTest.State != "failed" ||
		!strings.HasPrefix(st.SelfTest.Cause, "sched_getaffinity: fail-open, reason write") ||
		!strings.Contains(st.SelfTest.Cause, "operation not permitted") || !strings.Contains(st.SelfTest.Cause, "CAP_SYS_PTRACE") {
		t.Errorf("status of an agent that cannot write into processes: exit %v, %+v; want exit 1, self-test failed naming the refused write first", err, st)
	}
	if code, body := healthz(t, base); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz: %d %q, want 503", code, body)
	}
	before := waitAttached(t, base, 0)
	if v, ok := before["seccompagent_self_test_ok"]; !ok || v != 0 {
		t.Errorf("seccompagent_self_test_ok = %v (present %v), want 0", v, ok)
	}
	if !strings.Contains(agent.Logs(), `level=error msg="self-test failed: interception cannot work on this host`) {
		t.Errorf("no self-test failure line in the agent's log")
	}

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
	after := waitAttached(t, base, 0)
	// Every call failed open. sched_getaffinity's answer could not be
	// written (reason write, EPERM); sysinfo's handler may give up
	// earlier, reading the caller's /proc files (reason handler).
	var failOpen float64
	var lines []string
	for k, v := range after {
		if strings.HasPrefix(k, "seccompagent_calls_total{") {
			lines = append(lines, fmt.Sprintf("%s %v", k, v-before[k]))
			if strings.Contains(k, `outcome="continue"`) {
				failOpen += v - before[k]
			}
		}
	}
	wk := `seccompagent_calls_total{outcome="continue",reason="write",syscall="sched_getaffinity"}`
	if write := after[wk] - before[wk]; failOpen != float64(h["calls"]) || write != float64(h["calls"]/2) {
		t.Errorf("fail-opens %v (want %d), sched_getaffinity with reason write %v (want %d):\n%s",
			failOpen, h["calls"], write, h["calls"]/2, strings.Join(lines, "\n"))
	}
	warns := 0
	for _, line := range strings.Split(agent.Logs(), "\n") {
		if strings.Contains(line, "level=warning") && strings.Contains(line, "fail-open: the agent may not write into containers' memory") {
			warns++
			if !strings.Contains(line, "reason=write") || !strings.Contains(line, "operation not permitted") {
				t.Errorf("warning line lacks the reason or the error: %s", line)
			}
		}
	}
	// One for the self-test's call; the container's calls, within the
	// same minute, are held back.
	if warns != 1 {
		t.Errorf("%d misconfiguration warnings for %d fail-opens within seconds, want exactly 1 (rate limited)", warns, h["calls"]+1)
	}
}

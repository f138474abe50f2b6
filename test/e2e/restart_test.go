package e2e

// Restarts, upgrades and crashes of the agent: the holder keeps every
// container's listener fd open, so trapped calls wait in the kernel's queue
// and the next agent answers them. Containers run test/probe/hammer.c, which
// counts ENOSYS, other errors and answers with the host's numbers.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

// hammerResult is hammer's summary line.
type hammerResult struct {
	calls, enosys, errors, host int64
	maxLat                      time.Duration
	line                        string
}

func parseHammer(out string) (hammerResult, bool) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "calls=") {
			continue
		}
		r := hammerResult{line: line}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				r.calls = n
			case "enosys":
				r.enosys = n
			case "errors":
				r.errors = n
			case "host":
				r.host = n
			case "maxlat_us":
				r.maxLat = time.Duration(n) * time.Microsecond
			}
		}
		return r, true
	}
	return hammerResult{}, false
}

// hammering is one container running hammer.
type hammering struct {
	rt harness.Runtime
	b  *harness.Bundle
	id string
}

func startHammer(t *testing.T, rt harness.Runtime, a *harness.Agent, seconds int, pauseUS int) hammering {
	t.Helper()
	args := []string{"/hammer", strconv.Itoa(seconds), strconv.Itoa(memLimit), strconv.Itoa(wantCPUs)}
	if pauseUS > 0 {
		args = append(args, strconv.Itoa(pauseUS))
	}
	b, id := startDetached(t, rt, a, a.Socket, "restart-", args...)
	return hammering{rt: rt, b: b, id: id}
}

// result waits for the hammer's summary line.
func (h hammering) result(t *testing.T, timeout time.Duration) hammerResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, errOut := h.b.DetachedOutput(h.id)
		if r, ok := parseHammer(out); ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s container %s: no hammer result after %v\nstdout:\n%s\nstderr:\n%s", h.rt, h.id, timeout, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check fails t unless every call got the container's answer and none
// waited longer than bound.
func (r hammerResult) check(t *testing.T, what string, bound time.Duration) {
	t.Helper()
	if r.calls == 0 || r.enosys != 0 || r.errors != 0 || r.host != 0 {
		t.Errorf("%s: %s (want calls > 0 and no ENOSYS, errors or host answers)", what, r.line)
	}
	if bound > 0 {
		bound += harness.Slack()
	}
	if bound > 0 && r.maxLat > bound {
		t.Errorf("%s: slowest call %v, want at most %v (the restart gap plus a second)", what, r.maxLat, bound)
	}
}

// copyAgent puts a copy of the agent binary at another path: an upgrade
// starts "a new binary" while the old one serves.
func copyAgent(t *testing.T, bin string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "seccompagent-upgraded")
	in, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// restartAgent restarts a the way mode says and returns the new agent and
// the gap: from the old agent's end to the new one serving.
func restartAgent(t *testing.T, a *harness.Agent, mode string, opts harness.AgentOptions) (*harness.Agent, time.Duration) {
	t.Helper()
	bin := requireAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	switch mode {
	case "sigkill":
		a.Kill()
		time.Sleep(time.Second)
	case "sigterm":
		if err := a.Terminate(); err != nil {
			t.Errorf("agent exit after SIGTERM: %v", err)
		}
		time.Sleep(time.Second)
	case "upgrade":
		bin = copyAgent(t, bin)
	default:
		t.Fatalf("unknown restart mode %q", mode)
	}
	b, err := harness.StartAgentWith(ctx, bin, a.Socket, opts)
	if err != nil {
		t.Fatalf("%s: new agent did not start: %v\nold agent log:\n%s", mode, err, a.Logs())
	}
	gap := time.Since(start)
	if mode == "upgrade" {
		if !a.Wait(15 * time.Second) {
			t.Fatalf("upgrade: the old agent (pid %d) did not hand over and exit", a.Pid())
		}
		gap = time.Since(start)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("stopping agent: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log (%s):\n%s", b.LogPath, b.Logs())
		}
	})
	return b, gap
}

// TestRestart: while a runc and a crun container call both syscalls in a
// tight loop, the agent is killed (SIGKILL), stopped (SIGTERM) or upgraded
// (a second agent from another binary path started while it serves). Every
// call must get the container's answer, none an ENOSYS, and none wait
// longer than the restart gap plus a second.
func TestRestart(t *testing.T) {
	for _, mode := range []string{"sigkill", "sigterm", "upgrade"} {
		t.Run(mode, func(t *testing.T) {
			rts := []harness.Runtime{harness.Runc, harness.Crun}
			for _, rt := range rts {
				requireE2E(t, rt)
			}
			a := startAgent(t)
			var hs []hammering
			for _, rt := range rts {
				hs = append(hs, startHammer(t, rt, a, 8, 0))
			}
			time.Sleep(2 * time.Second)
			_, gap := restartAgent(t, a, mode, harness.AgentOptions{})
			t.Logf("%s: restart gap %v", mode, gap.Round(time.Millisecond))
			for _, h := range hs {
				r := h.result(t, 30*time.Second)
				t.Logf("%s %s: %s", mode, h.rt, r.line)
				r.check(t, fmt.Sprintf("%s, %s", mode, h.rt), gap+time.Second)
			}
		})
	}
}

// TestRestartManyContainers: 50 containers stay served across a SIGKILL, a
// SIGTERM restart and an upgrade in a row.
func TestRestartManyContainers(t *testing.T) {
	requireE2E(t, harness.Runc)
	const n = 50
	a := startAgent(t)
	hs := make([]hammering, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for i := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := limitedBundle(t, []string{"/hammer", "40", strconv.Itoa(memLimit), strconv.Itoa(wantCPUs), "20000"}, a.Socket)
			id := fmt.Sprintf("many-%d-%s", i, harness.UniqueID())
			ctx, cancel := context.WithTimeout(context.Background(), 2*containerTimeout)
			defer cancel()
			if err := harness.Runc.StartDetached(ctx, b, id); err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				return
			}
			hs[i] = hammering{rt: harness.Runc, b: b, id: id}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, h := range hs {
			if h.b != nil {
				_ = h.rt.KillDelete(h.b, h.id)
			}
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d of %d containers did not start: %s%s", len(failed), n, failed[0], agentLog(a))
	}
	cur := a
	for _, mode := range []string{"sigkill", "sigterm", "upgrade"} {
		time.Sleep(time.Second)
		var gap time.Duration
		cur, gap = restartAgent(t, cur, mode, harness.AgentOptions{})
		t.Logf("%s with %d containers: gap %v", mode, n, gap.Round(time.Millisecond))
	}
	for i, h := range hs {
		r := h.result(t, 60*time.Second)
		r.check(t, fmt.Sprintf("container %d", i), 0)
	}
}

// envTestStall is agent.EnvTestStall (this package is built without cgo
// for the VM, so it cannot import the agent).
const envTestStall = "SECCOMPAGENT_TEST_STALL_FIRST_NOTIFICATION"

// TestRestartMidNotification kills the agent while it holds a received,
// unanswered notification: the next agent finds it in the journal and
// answers it properly, so the caller sees the container's numbers.
func TestRestartMidNotification(t *testing.T) {
	for _, rt := range []harness.Runtime{harness.Runc, harness.Crun} {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			bin := requireAgent(t)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			a, err := harness.StartAgentWith(ctx, bin, filepath.Join(t.TempDir(), "agent.sock"),
				harness.AgentOptions{Env: []string{envTestStall + "=1"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Stop() })
			h := startHammer(t, rt, a, 4, 0)
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(a.Logs(), "test hook: stalling") {
				if time.Now().After(deadline) {
					t.Fatalf("the agent never stalled on a notification%s", agentLog(a))
				}
				time.Sleep(20 * time.Millisecond)
			}
			_, gap := restartAgent(t, a, "sigkill", harness.AgentOptions{})
			r := h.result(t, 30*time.Second)
			t.Logf("%s: %s (gap %v)", rt, r.line, gap.Round(time.Millisecond))
			r.check(t, string(rt), 0)
			if r.maxLat < time.Second {
				t.Errorf("slowest call %v: the stalled call should have waited for the restart (about 1 s)", r.maxLat)
			}
		})
	}
}

// TestHolderKilled: killing the holder while the agent runs loses nothing
// (the agent starts a new one and hands it every listener again), and a
// later agent crash is still survived.
func TestHolderKilled(t *testing.T) {
	requireE2E(t, harness.Runc)
	a := startAgent(t)
	h := startHammer(t, harness.Runc, a, 8, 0)
	time.Sleep(time.Second)
	old := a.HolderPid()
	if old == 0 {
		t.Fatalf("no holder runs next to %s%s", a.Socket, agentLog(a))
	}
	a.KillHolder()
	deadline := time.Now().Add(10 * time.Second)
	for a.HolderPid() == 0 || a.HolderPid() == old || !strings.Contains(a.Logs(), "holder back") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not start a new holder%s", agentLog(a))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, gap := restartAgent(t, a, "sigkill", harness.AgentOptions{})
	r := h.result(t, 30*time.Second)
	t.Logf("holder killed, then agent killed: %s (gap %v)", r.line, gap.Round(time.Millisecond))
	r.check(t, "runc", gap+time.Second)
}

// TestCreatedWhileAgentDown: a container created while no agent runs (the
// holder keeps the runtime socket and takes the connection) starts, and its
// calls wait for the next agent instead of failing.
func TestCreatedWhileAgentDown(t *testing.T) {
	for _, rt := range []harness.Runtime{harness.Runc, harness.Crun} {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			if err := a.Terminate(); err != nil {
				t.Fatal(err)
			}
			h := startHammer(t, rt, a, 3, 0)
			time.Sleep(time.Second)
			restartAgent(t, a, "sigkill", harness.AgentOptions{}) // already gone: just start again
			r := h.result(t, 30*time.Second)
			t.Logf("%s created while the agent was down: %s", rt, r.line)
			r.check(t, string(rt), 0)
			if r.maxLat < 500*time.Millisecond {
				t.Errorf("slowest call %v: the first call should have waited for the agent", r.maxLat)
			}
		})
	}
}

// TestUpgradeOldAgentIdles: with --after-handover wait (Kubernetes, where a
// container that exits is started again), the replaced agent keeps its pid
// but serves nothing, and the new one answers every call.
func TestUpgradeOldAgentIdles(t *testing.T) {
	requireE2E(t, harness.Runc)
	bin := requireAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	a, err := harness.StartAgentWith(ctx, bin, filepath.Join(t.TempDir(), "agent.sock"),
		harness.AgentOptions{Args: []string{"--after-handover", "wait"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	h := startHammer(t, harness.Runc, a, 5, 0)
	time.Sleep(time.Second)
	b, err := harness.StartAgentWith(ctx, copyAgent(t, bin), a.Socket, harness.AgentOptions{})
	if err != nil {
		t.Fatalf("new agent: %v%s", err, agentLog(a))
	}
	t.Cleanup(func() { _ = b.Stop() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.Pid()))
		if strings.Contains(string(cmdline), "idle") {
			break
		}
		if a.Wait(0) || time.Now().After(deadline) {
			t.Fatalf("the old agent did not turn idle (exited: %v, cmdline %q)%s", a.Wait(0), cmdline, agentLog(a))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := h.result(t, 30*time.Second)
	t.Logf("upgrade with the old agent idling: %s", r.line)
	r.check(t, "runc", 2*time.Second)
}

// TestStopIdleContainer: SIGTERM ends an agent at once even when its
// containers make no calls (their loops sit in the kernel holding nothing).
func TestStopIdleContainer(t *testing.T) {
	requireE2E(t, harness.Runc)
	a := startAgent(t)
	startDetached(t, harness.Runc, a, a.Socket, "idle-", "sleep", "1000")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.Logs(), "container attached") {
		if time.Now().After(deadline) {
			t.Fatalf("container never attached%s", agentLog(a))
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := a.Terminate(); err != nil {
		t.Fatalf("SIGTERM: %v%s", err, agentLog(a))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("agent took %v to stop", took)
	}
}

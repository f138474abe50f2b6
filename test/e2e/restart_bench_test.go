package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

// BenchmarkRestart measures, with N listeners attached (test/probe/listener.c:
// one process each, a sysinfo call per second), how long a restarted agent
// takes to re-attach all of them (SIGKILL to the new agent's "serving" line,
// which it logs once every listener's loop runs) and the longest a call of
// a listener calling every 5 ms waited across the restart. Run it with
//
//	go test -run '^$' -bench Restart -benchtime 1x ./test/e2e/
//
// (`make bench`); it is never part of `make test`.
func BenchmarkRestart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	bin := agentBin
	if agentErr != nil {
		b.Fatalf("agent did not build: %v", agentErr)
	}
	listener := filepath.Join(workDir, "listener")
	root, err := harness.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-O2", "-static", "-o", listener, filepath.Join(root, "test/probe/listener.c")).CombinedOutput(); err != nil {
		b.Fatalf("build listener: %v\n%s", err, out)
	}
	for _, n := range []int{1, 50, 1000} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchRestart(b, bin, listener, n)
			}
		})
	}
}

func benchRestart(b *testing.B, bin, listener string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := b.TempDir()
	a, err := harness.StartAgentWith(ctx, bin, filepath.Join(dir, "agent.sock"), harness.AgentOptions{Args: []string{"--log-level", "info"}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Stop()
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	spawn := func(period string) (*exec.Cmd, *bufio.Reader) {
		c := exec.Command(listener, a.Socket, period)
		out, err := c.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		procs = append(procs, c)
		r := bufio.NewReader(out)
		if line, err := r.ReadString('\n'); err != nil || line != "attached\n" {
			b.Fatalf("listener did not attach: %q %v", line, err)
		}
		return c, r
	}
	for i := 0; i < n-1; i++ {
		spawn("1000")
	}
	tight, tightOut := spawn("5")
	for strings.Count(a.Logs(), "container attached") < n {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)

	b.ResetTimer()
	start := time.Now()
	a.Kill()
	a2, err := harness.StartAgentWith(ctx, bin, a.Socket, harness.AgentOptions{Args: []string{"--log-level", "info"}})
	if err != nil {
		b.Fatal(err)
	}
	reattach := time.Since(start)
	b.StopTimer()
	defer a2.Stop()
	time.Sleep(300 * time.Millisecond)
	tight.Process.Signal(syscall.SIGTERM)
	line, _ := tightOut.ReadString('\n')
	tight.Wait()
	var maxLat int64
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "maxlat_us="); ok {
			maxLat, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(f, "enosys="); ok && v != "0" {
			b.Errorf("ENOSYS across the restart: %s", line)
		}
	}
	if !strings.Contains(a2.Logs(), fmt.Sprintf("adopted=%d", n)) {
		b.Errorf("the new agent did not adopt all %d listeners", n)
	}
	b.ReportMetric(float64(reattach.Microseconds())/1000, "reattach-ms")
	b.ReportMetric(float64(maxLat)/1000, "gap-ms")
	b.ReportMetric(0, "ns/op")
}

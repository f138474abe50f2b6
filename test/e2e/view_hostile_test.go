package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

// latencySource makes 2000 trapped sysinfo calls and prints how long they
// took and how many answers were wrong (not the container's 256 MiB).
const latencySource = `#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <time.h>
static int cmp(const void *a, const void *b) { long x = *(const long *)a, y = *(const long *)b; return x < y ? -1 : x > y; }
int main(void) {
	enum { N = 2000 };
	static long ns[N];
	unsigned long wrong = 0;
	for (int i = 0; i < N; i++) {
		struct timespec a, b;
		struct sysinfo si;
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (sysinfo(&si) != 0 || (unsigned long long)si.totalram * si.mem_unit != 268435456ULL)
			wrong++;
		clock_gettime(CLOCK_MONOTONIC, &b);
		ns[i] = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
	}
	qsort(ns, N, sizeof ns[0], cmp);
	printf("calls=%d\nwrong=%lu\np50_us=%ld\np99_us=%ld\nmax_us=%ld\n", N, wrong, ns[N / 2] / 1000, ns[N * 99 / 100] / 1000, ns[N - 1] / 1000);
	return 0;
}
`

// runServed runs the latency program and the C view client in a limited
// container and checks both answers; it returns the latency figures.
func runServed(t *testing.T, rt harness.Runtime, a *harness.Agent) harness.Probe {
	t.Helper()
	lat := harness.ViewExamplesDir + "/lat"
	client := harness.ViewExamplesDir + "/view-c"
	b := viewBundle(t, memLimit, harness.SectionedCommand(lat, client)...)
	stdout, stderr := runWrapped(t, rt, a, b)
	sec := harness.SplitSections(stdout)
	p := harness.ParseProbe(sec[lat])
	if p["calls"] != "2000" || p["wrong"] != "0" {
		t.Errorf("trapped sysinfo: %q, want 2000 calls and none wrong", sec[lat])
	}
	if want := fmt.Sprintf("cpu count %d\nmemory total %d\n", wantCPUs, memLimit); sec[client] != want {
		t.Errorf("view client in the container: %q, want %q\nstderr:\n%s", sec[client], want, stderr)
	}
	return p
}

// TestViewHostilePeers: peers that never read (slowloris), send garbage, or
// connect 10,000 times do not stop the agent from answering a container's
// trapped calls correctly nor its view client, hold none of the agent's
// fds afterwards, and the flooding peer is served again once its rate
// allows. Latency is reported, not asserted (make bench measures speed).
func TestViewHostilePeers(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	rootfs, _ := buildViewRootfs(t)
	src := filepath.Join(t.TempDir(), "lat.c")
	if err := os.WriteFile(src, []byte(latencySource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("musl-gcc", "-static", "-O2", "-o", filepath.Join(rootfs, harness.ViewExamplesDir, "lat"), src).CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc: %v\n%s", err, out)
	}
	a := startAgent(t)
	// `serve --socket S` serves its view at view/view.sock next to S
	// (oci-hook's ViewSocketFor; not imported: this binary is built
	// without cgo for the VM).
	sock := filepath.Join(filepath.Dir(a.Socket), "view", "view.sock")
	quiet := runServed(t, rt, a)
	fdsBefore := agentFds(t, a)

	// Slowloris: 500 connections that never read and stay open.
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for i := 0; i < 500; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("slowloris connection %d: %v", i, err)
		}
		slow = append(slow, c)
	}
	// Garbage: 200 connections writing 64 KiB each (the agent never reads;
	// the writes fail or fill a buffer nobody drains).
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	for i := 0; i < 200; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("garbage connection %d: %v", i, err)
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(garbage)
		slow = append(slow, c)
	}
	// Flood: at least 10,000 connections from 32 goroutines, and more
	// until the container below is done.
	var dialed, refused, answered atomic.Int64
	var served atomic.Bool
	var wg sync.WaitGroup
	floodStart := time.Now()
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dialed.Add(1) <= 10000 || !served.Load() {
				c, err := net.Dial("unix", sock)
				if err != nil {
					refused.Add(1) // backlog full: EAGAIN
					continue
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, _ := io.Copy(io.Discard, c); n > 0 {
					answered.Add(1)
				}
				c.Close()
			}
		}()
	}
	flooded := runServed(t, rt, a)
	served.Store(true)
	wg.Wait()
	t.Logf("flood: %d connections in %v: %d answered (rate limit), %d refused by a full backlog",
		dialed.Load()-32, time.Since(floodStart).Round(time.Millisecond), answered.Load(), refused.Load())
	for _, c := range slow {
		c.Close()
	}
	slow = nil
	t.Logf("trapped sysinfo latency (µs) quiet: p50 %s p99 %s max %s; under hostile peers: p50 %s p99 %s max %s",
		quiet["p50_us"], quiet["p99_us"], quiet["max_us"], flooded["p50_us"], flooded["p99_us"], flooded["max_us"])

	// The flooding peer (this test) is answered again once its bucket
	// refills, about itself.
	time.Sleep(2500 * time.Millisecond)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	doc, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(doc), `"pid": `+strconv.Itoa(os.Getpid())+",") {
		t.Errorf("after the flood the test process got %q, want its own view", doc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for after := agentFds(t, a); after > fdsBefore; after = agentFds(t, a) {
		if time.Now().After(deadline) {
			t.Fatalf("agent holds %d fds after the hostile peers, %d before%s", after, fdsBefore, agentLog(a))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if exited, _ := a.Exited(); exited {
		t.Fatalf("agent exited%s", agentLog(a))
	}
	if logs := a.Logs(); strings.Contains(logs, "level=error") || strings.Contains(logs, "level=warning") {
		t.Errorf("agent logged warnings or errors under hostile peers%s", agentLog(a))
	}
}

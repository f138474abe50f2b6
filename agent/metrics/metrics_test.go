package metrics

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/notify"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestMetrics(t *testing.T) {
	m := New("v-test")
	s, err := Listen("127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr.String()

	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before serving: %d %q, want 503", code, body)
	}
	m.Serving("lost", 3, time.Unix(1700000000, 500000000))
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz while serving: %d %q, want 200 ok", code, body)
	}

	m.Attached(1)
	m.Attached(1)
	m.Attached(-1)
	for _, o := range []notify.Outcome{
		{Syscall: "sysinfo", Response: notify.Return(0), Duration: 3 * time.Microsecond},
		{Syscall: "sysinfo", Response: notify.Return(0), Duration: 40 * time.Microsecond},
		{Syscall: "sched_getaffinity", Response: notify.Fail(syscall.EINVAL), Duration: 5 * time.Microsecond},
		{Syscall: "sysinfo", Response: notify.Continue(), Reason: notify.ReasonWrite, Duration: 2 * time.Microsecond},
		{Response: notify.Continue(), Reason: notify.ReasonUnregistered, Duration: time.Microsecond},
	} {
		m.Call(o)
	}
	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		`seccompagent_calls_total{outcome="answered",reason="",syscall="sysinfo"} 2`,
		`seccompagent_calls_total{outcome="errno",reason="",syscall="sched_getaffinity"} 1`,
		`seccompagent_calls_total{outcome="continue",reason="write",syscall="sysinfo"} 1`,
		`seccompagent_calls_total{outcome="continue",reason="unregistered",syscall=""} 1`,
		// 3 µs falls in the 4 µs bucket, 40 µs in the 64 µs one.
		`seccompagent_call_duration_seconds_bucket{outcome="answered",syscall="sysinfo",le="2e-06"} 0`,
		`seccompagent_call_duration_seconds_bucket{outcome="answered",syscall="sysinfo",le="4e-06"} 1`,
		`seccompagent_call_duration_seconds_bucket{outcome="answered",syscall="sysinfo",le="6.4e-05"} 2`,
		`seccompagent_call_duration_seconds_count{outcome="answered",syscall="sysinfo"} 2`,
		`seccompagent_containers_attached 1`,
		`seccompagent_listeners_adopted 3`,
		`seccompagent_start_time_seconds{previous_agent="lost"} 1.7000000005e+09`,
		`seccompagent_build_info{version="v-test"} 1`,
		`process_open_fds `,
		`go_goroutines `,
	} {
		// A whole line, or a line's start for the values that vary.
		if !strings.Contains("\n"+body, "\n"+want+"\n") && !(strings.HasSuffix(want, " ") && strings.Contains("\n"+body, "\n"+want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	if strings.Contains(body, "seccompagent_self_test_ok") {
		t.Error("seccompagent_self_test_ok present before any self-test result")
	}
	m.SelfTestRunning()
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || body != "self-test running\n" {
		t.Errorf("/healthz while the self-test runs: %d %q, want 503", code, body)
	}
	m.SelfTest(true)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the self-test passed: %d, want 200", code)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\nseccompagent_self_test_ok 1\n") {
		t.Error("/metrics lacks seccompagent_self_test_ok 1")
	}
	m.SelfTest(false)
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after a failed self-test: %d, want 503", code)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\nseccompagent_self_test_ok 0\n") {
		t.Error("/metrics lacks seccompagent_self_test_ok 0")
	}
	m.SelfTest(true)
	m.Stopping()
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after Stopping: %d, want 503", code)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Call(notify.Outcome{Syscall: "sysinfo"})
	m.Attached(1)
	m.Serving("none", 0, time.Now())
	m.SelfTestRunning()
	m.SelfTest(false)
	m.Stopping()
	if _, err := Listen("127.0.0.1:0", nil); err == nil {
		t.Error("Listen with no registry succeeded")
	}
}

func TestListenBadAddr(t *testing.T) {
	for _, addr := range []string{"9101", "localhost:http-alt", "127.0.0.1:99999"} {
		if s, err := Listen(addr, New("x")); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
}

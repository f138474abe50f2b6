package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seccompagent/seccompagent/notify"
)

// Outcome label values of seccompagent_calls_total.
const (
	OutcomeAnswered = "answered" // the agent's value was returned
	OutcomeErrno    = "errno"    // the agent made the call fail, as the kernel would have
	OutcomeContinue = "continue" // fail-open: the kernel answered (label reason says why)
)

// latencyBuckets resolve microseconds: 1 µs to ~65 ms, doubling. A trapped
// round trip costs 8-70 µs on the development machines (DESIGN.md), native
// sysinfo ~0.4 µs.
var latencyBuckets = prometheus.ExponentialBuckets(1e-6, 2, 17)

// Metrics is the agent's registry. A nil *Metrics is valid and records
// nothing.
type Metrics struct {
	reg      *prometheus.Registry
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	attached prometheus.Gauge
	adopted  prometheus.Gauge
	start    *prometheus.GaugeVec
	selfTest prometheus.Gauge
	serving  atomic.Bool
	// selfTest is the self-test's state for /healthz: selfTestOff (or
	// passed), selfTestRunning, selfTestFailed.
	selfTestState atomic.Int32
}

const (
	selfTestOK int32 = iota
	selfTestRunning
	selfTestFailed
)

// New makes the registry: the agent's metrics, its build info, and the Go
// runtime's and the process's own (open fds, threads: one per listener).
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seccompagent_calls_total",
			Help: "Trapped system calls answered, by syscall, outcome (answered, errno, continue) and, for continue, the fail-open reason.",
		}, []string{"syscall", "outcome", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seccompagent_call_duration_seconds",
			Help:    "Time from taking a notification in hand to the response sent, by syscall and outcome.",
			Buckets: latencyBuckets,
		}, []string{"syscall", "outcome"}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seccompagent_containers_attached",
			Help: "Seccomp listeners served now (one per container process that connected: create and each exec).",
		}),
		adopted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seccompagent_listeners_adopted",
			Help: "Listeners this agent took over at start from the holder (kept across a restart or hand-over).",
		}),
		start: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "seccompagent_start_time_seconds",
			Help: "When this agent started serving (Unix time), labelled with how the previous agent ended: none (first start), exited (hand-over or clean stop), lost (crash or kill).",
		}, []string{"previous_agent"}),
	}
	m.selfTest = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "seccompagent_self_test_ok",
		Help: "1 when the start-up self-test passed (a trapped call of the agent's child was answered), 0 when it failed; absent while it runs or when it is off.",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "seccompagent_build_info",
		Help:        "The agent's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	m.reg.MustRegister(m.calls, m.latency, m.attached, m.adopted, m.start, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Outcome is the outcome label of a response.
func Outcome(r notify.Response) string {
	switch {
	case r.Continue:
		return OutcomeContinue
	case r.Errno != 0:
		return OutcomeErrno
	default:
		return OutcomeAnswered
	}
}

// Call records one answered notification.
func (m *Metrics) Call(o notify.Outcome) {
	if m == nil {
		return
	}
	outcome := Outcome(o.Response)
	m.calls.WithLabelValues(o.Syscall, outcome, o.Reason).Inc()
	m.latency.WithLabelValues(o.Syscall, outcome).Observe(o.Duration.Seconds())
}

// Attached adds delta (+1 or -1) to the listeners served.
func (m *Metrics) Attached(delta int) {
	if m == nil {
		return
	}
	m.attached.Add(float64(delta))
}

// Serving records that the agent serves: how the previous one ended and
// how many listeners it adopted; /healthz answers 200 from now on.
func (m *Metrics) Serving(previous string, adopted int, at time.Time) {
	if m == nil {
		return
	}
	m.start.WithLabelValues(previous).Set(float64(at.UnixNano()) / 1e9)
	m.adopted.Set(float64(adopted))
	m.serving.Store(true)
}

// SelfTestRunning makes /healthz answer 503 until SelfTest(true).
func (m *Metrics) SelfTestRunning() {
	if m == nil {
		return
	}
	m.selfTestState.Store(selfTestRunning)
}

// SelfTest records the start-up self-test's result; a failed one makes
// /healthz answer 503 for good.
func (m *Metrics) SelfTest(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.selfTest.Set(1)
		m.selfTestState.Store(selfTestOK)
	} else {
		m.selfTest.Set(0)
		m.selfTestState.Store(selfTestFailed)
	}
	// Registered on first use: absent until the self-test has a result.
	_ = m.reg.Register(m.selfTest)
}

// Stopping makes /healthz answer 503: the agent no longer accepts runtimes.
func (m *Metrics) Stopping() {
	if m == nil {
		return
	}
	m.serving.Store(false)
}

// Handler serves /metrics (Prometheus text or protobuf, as the scraper
// asks) and /healthz (200 "ok" while the agent serves, 503 before, while
// it stops, while the self-test runs and after it failed).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !m.serving.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not serving")
			return
		}
		switch m.selfTestState.Load() {
		case selfTestRunning:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "self-test running")
			return
		case selfTestFailed:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "self-test failed: see `seccompagent status`")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is the metrics HTTP server.
type Server struct {
	// Addr is the address it listens on (the port chosen when ADDR's was 0).
	Addr net.Addr
	srv  *http.Server
	done chan error
}

// Listen binds addr now (so a taken port fails `serve` at once) and serves
// m's Handler in the background until Close.
func Listen(addr string, m *Metrics) (*Server, error) {
	if m == nil {
		return nil, errors.New("metrics: no registry")
	}
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--metrics %q: want HOST:PORT (e.g. 127.0.0.1:9101): %w", addr, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("--metrics %q: port: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	s := &Server{Addr: ln.Addr(), done: make(chan error, 1),
		srv: &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, letting scrapes in progress finish for up to 2 s.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

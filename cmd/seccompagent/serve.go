package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/seccompagent/seccompagent/agent"
	"github.com/seccompagent/seccompagent/agent/metrics"
	ocihook "github.com/seccompagent/seccompagent/oci-hook"
	"github.com/sirupsen/logrus"
)

func init() {
	commands["serve"] = command{"run the agent: answer trapped syscalls for containers", runServe}
	commands["hold"] = command{"keep containers' listener fds across agent restarts (started by serve)", runHold}
	commands["idle"] = command{"do nothing until stopped (what serve --after-handover wait becomes)", runIdle}
}

func runServe(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", ocihook.DefaultSocket, "unix socket runtimes connect to (linux.seccomp.listenerPath)")
	holderSocket := fs.String("holder-socket", "", "socket of the holder that keeps listener fds across restarts (default: holder.sock next to --socket)")
	holder := fs.String("holder", "process", "what keeps listener fds across restarts: process (a `seccompagent hold` started on demand), systemd (the unit's fd store), none (this process only: its exit costs every container ENOSYS)")
	afterHandover := fs.String("after-handover", "exit", "when a newer agent takes over: exit, or wait (idle until SIGTERM: for supervisors that restart what exits, e.g. a Kubernetes pod being replaced)")
	viewSocket := fs.String("view-socket", ocihook.ViewSocketFor(ocihook.DefaultSocket),
		"socket where any process (containers included) reads its own limits; default: view/view.sock next to --socket; \"\" turns it off")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	procRoot := fs.String("proc", "/proc", "procfs mount to read processes from")
	fsRoot := fs.String("root", "/", "root under which cgroup mounts and /sys are found")
	syncWake := fs.Bool("sync-wake-up", true, "use synchronous wake-up where the kernel has it (Linux 6.6+); false takes the older kernels' path (make bench compares both)")
	controlSocket := fs.String("control-socket", "", "root-only socket `seccompagent status` asks (default: control.sock next to --socket)")
	selfTest := fs.Bool("self-test", true, "at start, trap a call of a child through the full path and report unhealthy (log, metric, /healthz, status) when that fails")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz (e.g. 127.0.0.1:9101; off when empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !flagSet(fs, "view-socket") {
		*viewSocket = ocihook.ViewSocketFor(*socket)
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	cfg := agent.Config{Socket: *socket, ViewSocket: *viewSocket, ProcRoot: *procRoot, FSRoot: *fsRoot, Version: version, Log: logrus.NewEntry(logger),
		NoSyncWakeUp: !*syncWake, ControlSocket: *controlSocket}
	if cfg.ControlSocket == "" {
		cfg.ControlSocket = agent.DefaultControlSocket(*socket)
	}
	if *selfTest {
		cfg.SelfTest = func(socket, id string) *exec.Cmd {
			return exec.Command("/proc/self/exe", "self-test-child", "--socket", socket, "--id", id)
		}
	}
	if *afterHandover != "exit" && *afterHandover != "wait" {
		return fmt.Errorf("--after-handover %q: want exit or wait", *afterHandover)
	}
	switch *holder {
	case "process":
		cfg.HolderSocket = *holderSocket
		if cfg.HolderSocket == "" {
			cfg.HolderSocket = agent.DefaultHolderSocket(*socket)
		}
		cfg.SpawnHolder = func() error { return spawnHolder(cfg.HolderSocket, *level, *format) }
	case "systemd":
		cfg.Systemd = true
	case "none":
	default:
		return fmt.Errorf("--holder %q: want process, systemd or none", *holder)
	}
	if *metricsAddr != "" {
		cfg.Metrics = metrics.New(version)
		ms, err := metrics.Listen(*metricsAddr, cfg.Metrics)
		if err != nil {
			return err
		}
		defer ms.Close()
		logger.WithField("addr", ms.Addr.String()).Info("serving metrics at /metrics and health at /healthz")
	}
	srv, err := agent.New(cfg)
	if err != nil {
		return err
	}
	// A log reader that goes away must not take the agent (and with it
	// every container's trapped calls) down.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = srv.Run(ctx)
	if errors.Is(err, agent.ErrHandedOver) {
		if *afterHandover == "wait" {
			// exec ends every thread (and the holder connection with
			// them) but keeps the pid, so the supervisor sees the
			// process alive and starts no old agent again.
			exe := "/proc/self/exe"
			err = syscall.Exec(exe, []string{os.Args[0], "idle"}, os.Environ())
			return fmt.Errorf("exec %s idle: %w", exe, err)
		}
		return nil
	}
	return err
}

// runIdle is what an agent that handed over with --after-handover wait
// becomes: a process that does nothing until it is stopped.
func runIdle(_ []string, _, stderr io.Writer) error {
	fmt.Fprintln(stderr, "seccompagent: handed over to a newer agent; idle until stopped")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return nil
}

// spawnHolder starts `seccompagent hold` from this very binary (even if the
// file was replaced by an upgrade), in its own session so that a signal to
// the agent's process group does not reach it.
func spawnHolder(socket, level, format string) error {
	cmd := exec.Command("/proc/self/exe", "hold", "--socket", socket, "--log-level", level, "--log-format", format)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap it if it exits while we run
	return nil
}

func runHold(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", agent.DefaultHolderSocket(ocihook.DefaultSocket), "the holder's socket (serve --holder-socket)")
	idle := fs.Duration("idle-exit", 5*time.Minute, "exit after this long with no agent and no container to hold (0: never)")
	afterTakeover := fs.String("after-takeover", "exit", "when a newer holder takes everything: exit, or wait (idle until stopped: for supervisors that restart what exits)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	if *afterTakeover != "exit" && *afterTakeover != "wait" {
		return fmt.Errorf("--after-takeover %q: want exit or wait", *afterTakeover)
	}
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	return agent.RunHolder(agent.HolderConfig{Socket: *socket, IdleExit: *idle, WaitAfterTakeover: *afterTakeover == "wait",
		Log: logrus.NewEntry(logger).WithField("role", "holder")})
}

func newLogger(w io.Writer, level, format string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	l.SetLevel(lv)
	switch format {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	return l, nil
}

// flagSet reports whether name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

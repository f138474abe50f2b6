package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/seccompagent/seccompagent/agent"
	ocihook "github.com/seccompagent/seccompagent/oci-hook"
	"github.com/sirupsen/logrus"
)

func init() {
	commands["serve"] = command{"run the agent: answer trapped syscalls for containers", runServe}
}

func runServe(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", ocihook.DefaultSocket, "unix socket runtimes connect to (linux.seccomp.listenerPath)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	procRoot := fs.String("proc", "/proc", "procfs mount to read processes from")
	fsRoot := fs.String("root", "/", "root under which cgroup mounts and /sys are found")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	srv, err := agent.New(agent.Config{Socket: *socket, ProcRoot: *procRoot, FSRoot: *fsRoot,
		Version: version, Log: logrus.NewEntry(logger)})
	if err != nil {
		return err
	}
	// A log reader that goes away must not take the agent (and with it
	// every container's trapped calls) down.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return srv.Run(ctx)
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

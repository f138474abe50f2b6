package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/seccompagent/seccompagent/agent"
	ocihook "github.com/seccompagent/seccompagent/oci-hook"
)

func init() {
	commands["status"] = command{"show the running agent: health, kernel features, attached containers", runStatus}
	commands["self-test-child"] = command{"(internal) the start-up self-test's child process", runSelfTestChild}
}

// runStatus asks the running agent over its root-only control socket. It
// fails (exit status 1) when the agent is unreachable or unhealthy: its
// self-test failed, or is still running.
func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", ocihook.DefaultSocket, "the agent's runtime socket (serve --socket); the control socket is next to it")
	control := fs.String("control-socket", "", "the agent's control socket (serve --control-socket)")
	asJSON := fs.Bool("json", false, "print the agent's status as JSON (format: docs/status.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	path := *control
	if path == "" {
		path = agent.DefaultControlSocket(*socket)
	}
	st, err := agent.QueryStatus(path, 5*time.Second)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else if err := printStatus(stdout, st); err != nil {
		return err
	}
	switch st.SelfTest.State {
	case agent.SelfTestFailed:
		return fmt.Errorf("unhealthy: self-test failed: %s", st.SelfTest.Cause)
	case agent.SelfTestRunning:
		return errors.New("not healthy yet: the self-test is still running")
	}
	return nil
}

func printStatus(w io.Writer, st *agent.Status) error {
	health := "yes"
	if !st.Healthy {
		health = "NO"
	}
	test := st.SelfTest.State
	if st.SelfTest.Cause != "" {
		test += ": " + st.SelfTest.Cause
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	fmt.Fprintf(w, "seccompagent %s, pid %d, serving since %s (previous agent: %s)\n",
		st.Version, st.Pid, st.ServingSince.Format(time.RFC3339), st.PreviousAgent)
	fmt.Fprintf(w, "healthy: %s (self-test %s)\n", health, test)
	k := st.Kernel
	fmt.Fprintf(w, "kernel: %s, cgroups %s, nr_cpu_ids %d, cpumask %d bytes, sync wake-up %s, orphaned RECV woken %s, x32 %s\n",
		k.Release, k.Cgroups, k.NrCPUIDs, k.MaskSize, yesNo[k.SyncWakeUp], yesNo[k.OrphanWakesRecv], yesNo[k.X32])
	fmt.Fprintf(w, "containers: %d attached\n", len(st.Containers))
	if len(st.Containers) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tINIT PID\tPID\tRUNTIME\tSINCE\tCALLS\tFAIL-OPENS\tLAST FAIL-OPEN")
	for _, c := range st.Containers {
		id := c.ID
		if len(id) > 24 && !strings.HasPrefix(id, "seccompagent-") {
			id = id[:24]
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\n", id, c.InitPid, c.Pid, orDash(c.Runtime),
			c.Since.Format(time.RFC3339), c.Calls, c.FailOpens, orDash(c.LastReason))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runSelfTestChild(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("self-test-child", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "the agent's runtime socket")
	id := fs.String("id", "", "the container id to report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *socket == "" || *id == "" {
		return errors.New("--socket and --id are required (the agent starts this itself)")
	}
	return agent.SelfTestChild(*socket, *id)
}

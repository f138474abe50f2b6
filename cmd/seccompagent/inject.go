package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ocihook "github.com/seccompagent/seccompagent/oci-hook"
)

func init() {
	commands["inject"] = command{"turn interception on in an OCI bundle's config.json (plain runc/crun)", runInject}
}

// runInject applies the oci-hook modifier to a bundle, for people who run
// runc or crun by hand instead of through seccompagent-runtime. The
// container is enabled unless its config says seccompagent.io/enable=false
// (or SECCOMPAGENT_ENABLE=false); --force-enable overrides that.
func runInject(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundle := fs.String("bundle", "", "OCI bundle directory holding config.json (required)")
	socket := fs.String("socket", ocihook.DefaultSocket, "agent socket to write as linux.seccomp.listenerPath")
	viewDir := fs.String("view-dir", ocihook.ViewDirFor(ocihook.DefaultSocket),
		"host directory of the agent's view socket, bind-mounted read-only at "+ocihook.ContainerViewDir+"; default: view/ next to --socket; \"\" for none")
	lxcfsDir := fs.String("lxcfs-dir", ocihook.DefaultLXCFSDir, "LXCFS mount whose /proc and CPU-list files the container gets (seccompagent.io/lxcfs=auto|true|false decides)")
	force := fs.Bool("force-enable", false, "intercept even when the config says seccompagent.io/enable=false or SECCOMPAGENT_ENABLE=false")
	runtime := fs.String("runtime", "runc", "the runtime (runc, crun or a path) that will start the bundle: decides whether "+ocihook.FlagWaitKillableRecv+" can be requested")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bundle == "" {
		return errors.New("--bundle is required: the directory holding config.json")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !flagSet(fs, "view-dir") {
		*viewDir = ocihook.ViewDirFor(*socket)
	}
	path := filepath.Join(*bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The flag only where kernel and runtime both take it: a runtime that
	// does not know it refuses to start the container.
	killable, why := false, "runtime not found"
	if rt, err := exec.LookPath(*runtime); err == nil {
		killable, why = ocihook.WaitKillableRecv(rt)
	}
	mod := ocihook.Modifier{Socket: *socket, DefaultEnabled: true, ForceEnable: *force, ViewDir: *viewDir, WaitKillableRecv: killable}
	if mod.WantsLXCFS(data) {
		// A dead mount counts as absent; an unreadable mount table too.
		if mod.LXCFS, err = ocihook.FindLXCFS("/proc", *lxcfsDir); err != nil {
			mod.LXCFS.Missing = err.Error()
		}
	}
	out, res, err := mod.ModifyConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if !res.Enabled {
		_, err := fmt.Fprintf(stdout, "%s: the container turns interception off (%s=false); nothing changed, --force-enable overrides it\n", path, ocihook.AnnotationEnable)
		return err
	}
	if res.Changed {
		if err := ocihook.WriteConfig(path, out); err != nil {
			return err
		}
	}
	switch {
	case len(res.Trapped) == 0:
		fmt.Fprintf(stdout, "%s: nothing trapped, the seccomp profile does not allow %s\n", path, strings.Join(res.Syscalls, " or "))
		return nil
	case res.Changed:
		fmt.Fprintf(stdout, "%s: %s now answered by the agent at %s\n", path, strings.Join(res.Trapped, ", "), *socket)
		if len(res.LXCFSMounts) > 0 {
			fmt.Fprintf(stdout, "%s: %s now served by LXCFS at %s\n", path, strings.Join(res.LXCFSMounts, ", "), mod.LXCFS.Dir)
		}
		if !killable {
			fmt.Fprintf(stdout, "%s: without %s (%s): a signal can interrupt a trapped call while its answer is written\n", path, ocihook.FlagWaitKillableRecv, why)
		}
	default:
		fmt.Fprintf(stdout, "%s: already set up (%s via %s)\n", path, strings.Join(res.Trapped, ", "), *socket)
	}
	if err := ocihook.CheckAgent(*socket); err != nil {
		fmt.Fprintf(stderr, "note: %v; runc and crun refuse to start this container until it is\n", err)
	} else if _, err := os.Stat(*viewDir); *viewDir != "" && err != nil {
		fmt.Fprintf(stderr, "note: view socket directory %s: %v; runc and crun refuse to mount it until the agent serves its view socket there\n", *viewDir, err)
	}
	return nil
}

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	seccomp "github.com/seccomp/libseccomp-golang"
	"github.com/seccompagent/seccompagent/handlers/affinity"
	ocihook "github.com/seccompagent/seccompagent/oci-hook"
	"golang.org/x/sys/unix"
)

func init() {
	commands["exec"] = command{"run a command (and its children) with its cgroup's view: systemd units, batch jobs, CI", runExec}
}

// runExec installs the agent's notify filter on itself and execs the
// command, so that processes that are not containers (a systemd service
// with MemoryMax=/CPUQuota=, a Slurm or systemd-run job) see their cgroups'
// limits. The listener fd goes to the running agent exactly as runc would
// send it; the agent serves it until the command and all its descendants
// are gone. It returns only on failure: on success CMD replaces it.
func runExec(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", ocihook.DefaultSocket, "the agent's socket")
	cpus := fs.String("cpus", "quota", "what sched_getaffinity shows: quota (CPUs from the cgroup's quota), off (the kernel's mask) or N")
	onMissing := fs.String("on-missing-agent", "fail", "no agent listening: fail (run nothing) or skip (run CMD without the agent's view)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: seccompagent exec [flags] -- CMD [ARGS...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no command: seccompagent exec [flags] -- CMD [ARGS...]")
	}
	if _, err := affinity.ParsePolicy(*cpus); err != nil {
		return fmt.Errorf("--cpus=%q: want quota, off or a positive integer", *cpus)
	}
	if *onMissing != "fail" && *onMissing != "skip" {
		return fmt.Errorf("--on-missing-agent=%q: want fail or skip", *onMissing)
	}
	argv := fs.Args()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if err := ocihook.CheckAgent(*socket); err != nil {
		if *onMissing == "fail" {
			return fmt.Errorf("%w; nothing was run (--on-missing-agent=skip runs it without the agent)", err)
		}
		fmt.Fprintf(stderr, "seccompagent exec: warning: %v; running %s without the agent's view\n", err, argv[0])
		return syscall.Exec(path, argv, os.Environ())
	}

	// The filter is installed on this thread only, and this thread
	// execs: execve(2) ends every other thread of the process, so the new
	// program starts with the filter on its only thread, and every
	// child it forks inherits it. No TSYNC needed.
	runtime.LockOSThread()
	fd, err := installFilter()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id := "exec-" + host + "-" + strconv.Itoa(os.Getpid())
	err = sendListener(*socket, fd, id, *cpus)
	// The agent holds its own copy now; ours must not reach CMD.
	unix.Close(fd)
	if err != nil {
		// The filter is loaded and nobody will answer it: every trapped
		// call would fail with ENOSYS, so run nothing.
		return fmt.Errorf("hand the listener to the agent at %s: %w; nothing was run", *socket, err)
	}
	// The agent hangs up both when it takes the listener and when it
	// rejects the connection (and closes the fd). Ask once: with our copy
	// closed, a listener nobody holds answers ENOSYS at once; a held one
	// is answered by the agent.
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("the agent at %s did not take the listener (see its log; it accepts root only); nothing was run", *socket)
	}
	return syscall.Exec(path, argv, os.Environ())
}

// installFilter loads SCMP_ACT_NOTIFY for the calls the agent answers on
// the three x86 ABIs (everything else allowed) and returns the listener fd.
// A process without CAP_SYS_ADMIN must set no_new_privs to load a filter;
// root keeps setuid programs working by not setting it.
func installFilter() (int, error) {
	filter, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return -1, fmt.Errorf("seccomp filter: %w", err)
	}
	defer filter.Release()
	for _, arch := range []seccomp.ScmpArch{seccomp.ArchAMD64, seccomp.ArchX86, seccomp.ArchX32} {
		if err := filter.AddArch(arch); err != nil && !errors.Is(err, seccomp.ErrSyscallDoesNotExist) {
			return -1, fmt.Errorf("seccomp filter: add %s: %w", arch, err)
		}
	}
	for _, name := range ocihook.DefaultSyscalls {
		nr, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			return -1, fmt.Errorf("seccomp filter: %s: %w", name, err)
		}
		if err := filter.AddRule(nr, seccomp.ActNotify); err != nil {
			return -1, fmt.Errorf("seccomp filter: notify %s: %w", name, err)
		}
	}
	if err := filter.SetNoNewPrivsBit(os.Geteuid() != 0); err != nil {
		return -1, err
	}
	if err := filter.Load(); err != nil {
		return -1, fmt.Errorf("load seccomp filter (needs Linux >= 5.0 and libseccomp >= 2.5): %w", err)
	}
	fd, err := filter.GetNotifFd()
	if err != nil {
		return -1, fmt.Errorf("seccomp listener fd: %w", err)
	}
	return int(fd), nil
}

// sendListener sends fd to the agent as runc does for a container
// (runtime-spec "seccomp" listener: one ContainerProcessState, the fd in
// SCM_RIGHTS), with this process as the container's init, and waits for
// the agent to hang up: then it has the fd.
func sendListener(socket string, fd int, id, cpus string) error {
	pid := os.Getpid()
	st := specs.ContainerProcessState{
		Version: specs.Version,
		Fds:     []string{specs.SeccompFdName},
		Pid:     pid,
		State: specs.State{Version: specs.Version, ID: id, Status: specs.StateRunning, Pid: pid,
			Annotations: map[string]string{affinity.Annotation: cpus}},
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", socket, ocihook.AgentTimeout)
	if err != nil {
		return err
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	if _, _, err := conn.WriteMsgUnix(data, unix.UnixRights(fd), nil); err != nil {
		return err
	}
	_ = conn.CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return fmt.Errorf("waiting for the agent to take the listener: %w", err)
	}
	return nil
}

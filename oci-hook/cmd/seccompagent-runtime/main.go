// Command seccompagent-runtime is an OCI runtime wrapper: engines call it in
// place of runc or crun. On create and run it turns interception on in the
// bundle's config.json for the containers that ask for it (see package
// ocihook; the agent's view socket directory, view/ next to the agent
// socket, is mounted at /run/seccompagent when it exists), then it execs the real runtime with the same arguments minus its
// own --seccompagent-* flags. Every other command goes straight to the real
// runtime.
//
// Docker (daemon.json):
//
//	"runtimes": {"seccompagent": {"path": "/usr/local/bin/seccompagent-runtime",
//	    "runtimeArgs": ["--seccompagent-runtime=runc", "--seccompagent-default=enabled"]}}
//
// Flags (a JSON file, /etc/seccompagent/runtime.json by default, may hold the
// same settings: {"runtime": "crun", "default": "enabled", "socket": "…",
// "on-missing-agent": "skip", "lxcfs-dir": "/var/lib/lxcfs"}; flags override
// it):
//
//	--seccompagent-runtime=runc|crun|PATH       the real runtime (default runc, looked up in PATH)
//	--seccompagent-default=enabled|disabled     for containers that say nothing (default disabled)
//	--seccompagent-socket=PATH                  the agent's socket (default /run/seccompagent/seccompagent.sock)
//	--seccompagent-on-missing-agent=fail|skip   no agent listening: refuse the container (default) or start it without interception
//	--seccompagent-lxcfs-dir=PATH               the LXCFS mount whose files enabled containers get (default /var/lib/lxcfs)
//	--seccompagent-config=PATH                  the settings file
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ocihook "github.com/seccompagent/seccompagent/oci-hook"
)

const defaultConfigPath = "/etc/seccompagent/runtime.json"

// settings is the wrapper's configuration; the JSON names are the flag names.
type settings struct {
	Runtime        string `json:"runtime"`
	Default        string `json:"default"`
	Socket         string `json:"socket"`
	OnMissingAgent string `json:"on-missing-agent"`
	LXCFSDir       string `json:"lxcfs-dir"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, syscall.Exec))
}

type execFunc func(path string, argv, env []string) error

// run returns only when it fails (or exec does): on success the real runtime
// replaces this process.
func run(argv []string, stderr io.Writer, execve execFunc) int {
	log := &logger{stderr: stderr}
	inv, err := parseArgs(argv)
	if err != nil {
		log.error(err.Error())
		return 2
	}
	log.file, log.format = inv.logFile, inv.logFormat
	s, err := loadSettings(inv.own)
	if err != nil {
		log.error(err.Error())
		return 2
	}
	runtime, err := findRuntime(s.Runtime)
	if err != nil {
		log.error(err.Error())
		return 1
	}
	if inv.modifies() {
		if err := prepare(inv, s, runtime, log); err != nil {
			log.error(err.Error())
			return 1
		}
	}
	err = execve(runtime, append([]string{runtime}, inv.args...), os.Environ())
	log.error(fmt.Sprintf("exec %s: %v", runtime, err))
	return 1
}

// loadSettings reads the settings file (optional at its default path) and
// applies the flags over it.
func loadSettings(flags map[string]string) (settings, error) {
	s := settings{Runtime: "runc", Default: "disabled", Socket: ocihook.DefaultSocket, OnMissingAgent: "fail", LXCFSDir: ocihook.DefaultLXCFSDir}
	path, explicit := flags["config"]
	if !explicit {
		path = defaultConfigPath
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return s, fmt.Errorf("settings file: %w", err)
	default:
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var f settings
		if err := dec.Decode(&f); err != nil {
			return s, fmt.Errorf("settings file %s: %w (want {\"runtime\", \"default\", \"socket\", \"on-missing-agent\", \"lxcfs-dir\"})", path, err)
		}
		for dst, v := range map[*string]string{
			&s.Runtime: f.Runtime, &s.Default: f.Default, &s.Socket: f.Socket, &s.OnMissingAgent: f.OnMissingAgent,
			&s.LXCFSDir: f.LXCFSDir,
		} {
			if v != "" {
				*dst = v
			}
		}
	}
	for name, v := range flags {
		switch name {
		case "runtime":
			s.Runtime = v
		case "default":
			s.Default = v
		case "socket":
			s.Socket = v
		case "on-missing-agent":
			s.OnMissingAgent = v
		case "lxcfs-dir":
			s.LXCFSDir = v
		}
	}
	switch {
	case s.Default != "enabled" && s.Default != "disabled":
		return s, fmt.Errorf("invalid --seccompagent-default=%q: want enabled or disabled", s.Default)
	case s.OnMissingAgent != "fail" && s.OnMissingAgent != "skip":
		return s, fmt.Errorf("invalid --seccompagent-on-missing-agent=%q: want fail or skip", s.OnMissingAgent)
	case !filepath.IsAbs(s.Socket):
		return s, fmt.Errorf("invalid --seccompagent-socket=%q: want an absolute path", s.Socket)
	case !filepath.IsAbs(s.LXCFSDir):
		return s, fmt.Errorf("invalid --seccompagent-lxcfs-dir=%q: want an absolute path", s.LXCFSDir)
	case s.Runtime == "":
		return s, fmt.Errorf("invalid --seccompagent-runtime=\"\": want runc, crun or a path")
	}
	return s, nil
}

// findRuntime resolves the real runtime and makes sure it is not this
// wrapper (installed as "runc" ahead of the real one, it would exec itself
// forever).
func findRuntime(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil && !strings.Contains(name, "/") {
		// Engines do not always pass a PATH (podman runs the runtime
		// for cleanup with an empty one): fall back to the system
		// directories runc and crun are installed in.
		for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if p, lerr := exec.LookPath(filepath.Join(dir, name)); lerr == nil {
				path, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("real runtime %q not found: %w (set --seccompagent-runtime)", name, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", err
	}
	self, err1 := os.Stat("/proc/self/exe")
	target, err2 := os.Stat(path)
	if err1 == nil && err2 == nil && os.SameFile(self, target) {
		return "", fmt.Errorf("real runtime %q is this wrapper (%s): point --seccompagent-runtime at runc or crun", name, path)
	}
	return path, nil
}

// waitKillableRecv decides whether the runtime at path gets
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (a seam for tests).
var waitKillableRecv = ocihook.WaitKillableRecv

// prepare edits the bundle's config.json for create and run. When the kernel
// and the real runtime support it, the filter is asked to wait killably
// once a notification is received, so a signal cannot interrupt a call while
// the agent writes its answer.
func prepare(inv *invocation, s settings, runtime string, log *logger) error {
	bundle := inv.bundle
	if bundle == "" {
		bundle = "."
	}
	name := inv.configFile
	if name == "" {
		name = "config.json"
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(bundle, name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the bundle's config: %w", err)
	}
	// The agent creates its view socket's directory when it starts; mount
	// it only when it is there (runc and crun refuse a missing source).
	viewDir := ocihook.ViewDirFor(s.Socket)
	if fi, err := os.Stat(viewDir); err != nil || !fi.IsDir() {
		viewDir = ""
	}
	mod := ocihook.Modifier{Socket: s.Socket, DefaultEnabled: s.Default == "enabled", ViewDir: viewDir}
	if mod.WantsLXCFS(data) {
		// A dead mount counts as absent; an unreadable mount table too.
		if mod.LXCFS, err = ocihook.FindLXCFS("/proc", s.LXCFSDir); err != nil {
			mod.LXCFS.Missing = err.Error()
		}
	}
	out, res, err := mod.ModifyConfig(data)
	if err != nil {
		return fmt.Errorf("container %s (%s): %w", inv.container, path, err)
	}

	for _, w := range res.Warnings {
		log.warn(fmt.Sprintf("container %s: %s", inv.container, w))
	}
	if len(res.Trapped) > 0 {
		if err := ocihook.CheckAgent(s.Socket); err != nil {
			if s.OnMissingAgent == "fail" {
				return fmt.Errorf("container %s: %w (or start it with seccompagent.io/enable=false)", inv.container, err)
			}
			msg := fmt.Sprintf("container %s starts without interception: %v", inv.container, err)
			if !res.Changed {
				msg = fmt.Sprintf("container %s: %v, and its config already names the agent: the runtime will refuse it", inv.container, err)
			}
			log.warn(msg)
			return nil
		}
		// Ask the runtime only for a container that is intercepted.
		if mod.WaitKillableRecv, _ = waitKillableRecv(runtime); mod.WaitKillableRecv {
			if out, res, err = mod.ModifyConfig(data); err != nil {
				return fmt.Errorf("container %s (%s): %w", inv.container, path, err)
			}
		}
	}
	if !res.Changed {
		return nil
	}
	if err := ocihook.WriteConfig(path, out); err != nil {
		return fmt.Errorf("container %s: write %s: %w", inv.container, path, err)
	}
	return nil
}

// logger writes the wrapper's messages. With the runtime's --log FILE,
// messages also go there in the runtime's --log-format, where containerd and
// docker look for the runtime's error; warnings then go only there, because
// the runtime's stderr may be the container's own stderr (docker logs).
type logger struct {
	stderr       io.Writer
	file, format string
}

func (l *logger) warn(msg string)  { l.log("warning", msg, l.file == "") }
func (l *logger) error(msg string) { l.log("error", msg, true) }

func (l *logger) log(level, msg string, toStderr bool) {
	msg = "seccompagent-runtime: " + msg
	if toStderr {
		fmt.Fprintf(l.stderr, "%s: %s\n", level, msg)
	}
	if l.file == "" {
		return
	}
	f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		if !toStderr {
			fmt.Fprintf(l.stderr, "%s: %s\n", level, msg)
		}
		return
	}
	defer f.Close()
	now := time.Now().Format(time.RFC3339Nano)
	var line []byte
	if strings.EqualFold(l.format, "json") {
		line, _ = json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{level, msg, now})
	} else {
		line = []byte(fmt.Sprintf("time=%q level=%s msg=%s", now, level, strconv.Quote(msg)))
	}
	f.Write(append(line, '\n'))
}

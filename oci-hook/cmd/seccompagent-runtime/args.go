package main

import (
	"fmt"
	"strings"
)

// ownPrefix marks the wrapper's flags. They may appear anywhere before the
// command (docker puts runtimeArgs first) and among the command's flags.
const ownPrefix = "--seccompagent-"

// ownFlags are the wrapper's flags (without the prefix); all take a value,
// as --seccompagent-x=V or --seccompagent-x V.
var ownFlags = map[string]bool{"runtime": true, "default": true, "socket": true, "on-missing-agent": true, "lxcfs-dir": true, "config": true}

// globalValueFlags are the runc and crun global flags that take a value;
// every other global flag is a switch. runc parses flags with Go's flag
// package, so -root works as well as --root.
var globalValueFlags = map[string]bool{
	"log": true, "log-format": true, "root": true, "rootless": true,
	"criu":           true, // runc
	"log-level":      true, // crun
	"cgroup-manager": true, // crun
}

// createValueFlags are the flags of runc/crun create and run that take a
// value.
var createValueFlags = map[string]bool{
	"bundle": true, "b": true,
	"config": true, "f": true, // crun: config file name, relative to the bundle
	"console-socket": true, "pid-file": true, "preserve-fds": true,
}

// invocation is a runtime command line taken apart.
type invocation struct {
	// own holds the wrapper's flags, name without prefix → value (the
	// last one wins).
	own map[string]string
	// args is the command line for the real runtime: the original minus
	// the wrapper's flags.
	args []string
	// command is the runtime subcommand ("" for e.g. `runc --version`).
	command string
	// logFile and logFormat are the global --log and --log-format.
	logFile, logFormat string
	// For create and run: the bundle ("" = the working directory), the
	// config file name (crun -f; "" = config.json) and the container id.
	bundle, configFile, container string
}

// modifies reports whether the command reads config.json: only then does the
// wrapper touch it.
func (inv *invocation) modifies() bool {
	return inv.command == "create" || inv.command == "run"
}

// parseArgs takes apart argv without the program name.
//
// Before the command: the wrapper's flags are removed, the runtime's global
// flags kept, with their values (a value never counts as the command).
// After it: the wrapper's flags are removed up to a "--", except for exec,
// whose trailing arguments are the process to run in the container; for
// create and run the bundle, config file and container id are read.
func parseArgs(argv []string) (*invocation, error) {
	inv := &invocation{own: map[string]string{}}
	i := 0
	takeOwn := func() error {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(argv[i], ownPrefix), "=")
		if !ownFlags[name] {
			return fmt.Errorf("unknown flag %s%s: want one of --seccompagent-runtime, -default, -socket, -on-missing-agent, -lxcfs-dir, -config", ownPrefix, name)
		}
		if !hasValue {
			if i+1 >= len(argv) {
				return fmt.Errorf("flag %s%s needs a value", ownPrefix, name)
			}
			i++
			value = argv[i]
		}
		inv.own[name] = value
		return nil
	}

	// Global flags, up to the command.
	for ; i < len(argv); i++ {
		a := argv[i]
		switch {
		case strings.HasPrefix(a, ownPrefix):
			if err := takeOwn(); err != nil {
				return nil, err
			}
			continue
		case a == "--":
			inv.args = append(inv.args, argv[i:]...)
			return inv, nil
		case !strings.HasPrefix(a, "-") || a == "-":
			inv.command = a
		}
		if inv.command != "" {
			break
		}
		inv.args = append(inv.args, a)
		name, value, hasValue := splitFlag(a)
		if !globalValueFlags[name] {
			continue
		}
		if !hasValue && i+1 < len(argv) {
			i++
			value = argv[i]
			inv.args = append(inv.args, value)
		}
		switch name {
		case "log":
			inv.logFile = value
		case "log-format":
			inv.logFormat = value
		}
	}
	if inv.command == "" {
		return inv, nil
	}
	inv.args = append(inv.args, inv.command)
	i++

	// The command's arguments.
	for ; i < len(argv); i++ {
		a := argv[i]
		if a == "--" || inv.command == "exec" {
			inv.args = append(inv.args, argv[i:]...)
			break
		}
		if strings.HasPrefix(a, ownPrefix) {
			if err := takeOwn(); err != nil {
				return nil, err
			}
			continue
		}
		inv.args = append(inv.args, a)
		if !inv.modifies() {
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if inv.container == "" {
				inv.container = a
			}
			continue
		}
		name, value, hasValue := splitFlag(a)
		if !createValueFlags[name] {
			// crun (argp) also takes -bDIR and -fFILE.
			if v, ok := strings.CutPrefix(a, "-b"); ok && !strings.HasPrefix(a, "--") && !strings.HasPrefix(a, "-bundle") {
				name, value, hasValue = "b", v, true
			} else if v, ok := strings.CutPrefix(a, "-f"); ok && !strings.HasPrefix(a, "--") {
				name, value, hasValue = "f", v, true
			} else {
				continue
			}
		}
		if !hasValue {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("%s flag %s needs a value", inv.command, a)
			}
			i++
			value = argv[i]
			inv.args = append(inv.args, value)
		}
		switch name {
		case "bundle", "b":
			inv.bundle = value
		case "config", "f":
			inv.configFile = value
		}
	}
	return inv, nil
}

// splitFlag turns "--name=value", "-name value" … into name and value.
func splitFlag(a string) (name, value string, hasValue bool) {
	a = strings.TrimPrefix(a, "-")
	a = strings.TrimPrefix(a, "-")
	return strings.Cut(a, "=")
}

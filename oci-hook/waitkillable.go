package ocihook

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
)

// FlagWaitKillableRecv is SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as the
// runtime-spec names it in linux.seccomp.flags (Linux 5.19). With it, once the
// agent has received a notification the trapped thread waits for the answer
// killably only: a non-fatal signal can no longer make the call return EINTR
// while the agent's answer is being written into its memory.
const FlagWaitKillableRecv = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"

// parseFeatureFlags reads linux.seccomp.supportedFlags from the output of
// `RUNTIME features` (runtime-spec features.json). known is false when the
// document does not list them (runc 1.1 prints no supportedFlags at all).
func parseFeatureFlags(out []byte) (flags []string, known bool) {
	var doc struct {
		Linux *struct {
			Seccomp *struct {
				SupportedFlags *[]string `json:"supportedFlags"`
			} `json:"seccomp"`
		} `json:"linux"`
	}
	if json.Unmarshal(out, &doc) != nil || doc.Linux == nil || doc.Linux.Seccomp == nil || doc.Linux.Seccomp.SupportedFlags == nil {
		return nil, false
	}
	return *doc.Linux.Seccomp.SupportedFlags, true
}

var versionLine = regexp.MustCompile(`(?m)^(\S+) version (\d+)\.(\d+)`)

// parseVersion reads "crun version 1.8.1" / "runc version 1.1.5" from
// `RUNTIME --version`.
func parseVersion(out []byte) (name string, major, minor int, ok bool) {
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return "", 0, 0, false
	}
	major, _ = strconv.Atoi(string(m[2]))
	minor, _ = strconv.Atoi(string(m[3]))
	return string(m[1]), major, minor, true
}

// runtimeTakesWaitKillable decides from a runtime's own answers whether it
// applies FlagWaitKillableRecv: its features document when that lists the
// seccomp flags (authoritative), else crun from 1.8 on (which predates
// `crun features`). Anything else is no: a runtime that does not know a flag
// refuses to start the container (runc 1.1: "seccomp flags ... not supported").
func runtimeTakesWaitKillable(features, version []byte) (bool, string) {
	if flags, known := parseFeatureFlags(features); known {
		if slices.Contains(flags, FlagWaitKillableRecv) {
			return true, "the runtime's features list it"
		}
		return false, "the runtime's features do not list it"
	}
	name, major, minor, ok := parseVersion(version)
	switch {
	case !ok:
		return false, "the runtime lists no seccomp flags and its version is unknown"
	case name == "crun" && (major > 1 || major == 1 && minor >= 8):
		return true, "crun >= 1.8"
	default:
		return false, name + " " + strconv.Itoa(major) + "." + strconv.Itoa(minor) + " lists no seccomp flags"
	}
}

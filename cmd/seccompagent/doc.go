// Command seccompagent is the seccomp user-notification supervisor: `serve`
// runs the daemon that OCI runtimes hand their seccomp listener fds to, and
// the operator subcommands (`explain`, `status`, `version`) answer questions
// about it; `install` puts the binaries onto a node (the image's init
// container).
//
// Only this package configures logging; every other package logs through the
// logrus entry it is given and never decides levels or formats.
package main

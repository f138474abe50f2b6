// Package agent is the seccompagent daemon: it accepts runtime connections
// on the listener socket (linux.seccomp.listenerPath), owns the containers
// attached through them and runs one notify loop per listener fd.
//
// What happens when a runtime connects is in server.go (accept, check the
// peer, receive the state and the fd, attach). cmd/seccompagent only parses
// flags, configures logging and calls Run.
//
// It must never answer a notification itself (that is notify's job), never
// log per notification above Debug, and never close a listener fd it did not
// receive.
package agent

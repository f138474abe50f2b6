// Package agent is the seccompagent daemon: it accepts runtime connections
// on the listener socket (linux.seccomp.listenerPath), owns the containers
// attached through them, runs one notify loop per listener fd, and makes
// all of that survive its own restarts.
//
// Where to look: server.go — what happens when a runtime connects (accept,
// check the peer, receive the state and the fd, hand a copy to the holder,
// serve) and what happens on start (take everything back from the holder,
// answer what a dead agent left unanswered) and on stop or hand-over.
// holder.go — `seccompagent hold`, the small process that keeps the fds
// while agents come and go. handoff.go — the versioned protocol between
// them. journal.go — the shared memory the kernel writes each received
// notification into. systemd.go — systemd's fd store as the holder.
// docs/restart.md explains the design. view.go — the view socket, where
// any process (a container included) reads its own limits; the kernel
// names the peer (SO_PEERCRED) and nothing the peer sends is ever read
// (docs/view.md).
// budget.go — receivers per listener and the per-container CPU budget;
// attach.go — how many connections attach at once.
//
// cmd/seccompagent only parses flags, configures logging and calls Run or
// RunHolder. This package must never answer a notification itself (that is
// notify's job), never log per notification above Debug, and never close a
// listener fd while a later agent may still need it.
package agent

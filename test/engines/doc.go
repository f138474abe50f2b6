// Package engines is the container-engine end-to-end tier: podman 4.3,
// containerd 1.6 (ctr) and dockerd 20.10, each started by the tests in
// private directories, run a tiny image through the wrapper runtime
// seccompagent-runtime with the agent serving them, and the probe inside
// must see the container's limits when interception is on, the host's when
// it is off, and the engine's own seccomp profile must still deny what it
// denies. Needs root; outside CI missing prerequisites skip, under CI=true
// they fail.
package engines

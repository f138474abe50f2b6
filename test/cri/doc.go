// Package cri is the Kubernetes tier: a containerd 1.6 with its CRI plugin,
// started by the test in private directories and a private mount namespace
// (like the engine tier, test/engines), driven through k8s.io/cri-api the
// way kubelet drives it — RunPodSandbox, CreateContainer, StartContainer —
// with the runtime handler "seccompagent" (seccompagent-runtime as the
// handler's runc) and the pod annotation seccompagent.io/enable passed
// through to the containers.
//
// It never touches the host's containerd, its sockets or /var/lib/containerd;
// everything it starts it stops by pid.
package cri

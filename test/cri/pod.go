package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanupTimeout bounds Pod.Remove, which runs on a fresh context so that
// a pod is removed even when the test's context has run out.
const cleanupTimeout = time.Minute

// Pod is a pod sandbox started through the CRI, with the containers
// started in it, in the order kubelet uses: RunPodSandbox, then for each
// container CreateContainer and StartContainer; Remove stops and removes
// them the same way.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig

	rs         runtimeapi.RuntimeServiceClient
	containers []string
}

// RunPod runs a pod sandbox with the runtime handler (a RuntimeClass's
// handler; "" is the default runtime) and checks that it is ready.
func (c *Containerd) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*Pod, error) {
	r, err := c.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox: %w", err)
	}
	p := &Pod{ID: r.PodSandboxId, Config: cfg, rs: c.Runtime}
	st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.ID})
	if err != nil {
		return p, fmt.Errorf("PodSandboxStatus: %w", err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Status.RuntimeHandler != handler {
		return p, fmt.Errorf("pod %s: state %v, handler %q; want ready, %q", p.ID, st.Status.State, st.Status.RuntimeHandler, handler)
	}
	return p, nil
}

// Start creates and starts a container in the pod and returns its id.
func (p *Pod) Start(ctx context.Context, cfg *runtimeapi.ContainerConfig) (string, error) {
	r, err := p.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.ID, Config: cfg, SandboxConfig: p.Config})
	if err != nil {
		return "", fmt.Errorf("CreateContainer %s: %w", cfg.GetMetadata().GetName(), err)
	}
	p.containers = append(p.containers, r.ContainerId)
	if _, err := p.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		return r.ContainerId, fmt.Errorf("StartContainer %s: %w", cfg.GetMetadata().GetName(), err)
	}
	return r.ContainerId, nil
}

// Wait polls the container's status until it has exited.
func (p *Pod) Wait(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	for {
		r, err := p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return nil, fmt.Errorf("ContainerStatus: %w", err)
		}
		if r.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return r.Status, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("container %s did not exit: %w", id, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RemoveContainer stops the container (SIGTERM, then SIGKILL after
// timeout, as kubelet does when it restarts one), checks its exit, and
// removes it. It returns the exit code.
func (p *Pod) RemoveContainer(ctx context.Context, id string, timeout time.Duration) (int32, error) {
	if _, err := p.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: int64(timeout.Seconds())}); err != nil {
		return 0, fmt.Errorf("StopContainer: %w", err)
	}
	st, err := p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return 0, fmt.Errorf("ContainerStatus: %w", err)
	}
	if _, err := p.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		return 0, fmt.Errorf("RemoveContainer: %w", err)
	}
	for i, c := range p.containers {
		if c == id {
			p.containers = append(p.containers[:i], p.containers[i+1:]...)
			break
		}
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		return 0, fmt.Errorf("container %s is %v after StopContainer", id, st.Status.State)
	}
	return st.Status.ExitCode, nil
}

// Remove stops and removes the containers (last started first), then
// stops and removes the sandbox.
func (p *Pod) Remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(p.containers) - 1; i >= 0; i-- {
		id := p.containers[i]
		if _, err := p.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
			errs = append(errs, fmt.Errorf("StopContainer: %w", err))
		}
		if _, err := p.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			errs = append(errs, fmt.Errorf("RemoveContainer: %w", err))
		}
	}
	if _, err := p.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		errs = append(errs, fmt.Errorf("StopPodSandbox: %w", err))
	}
	if _, err := p.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		errs = append(errs, fmt.Errorf("RemovePodSandbox: %w", err))
	}
	return errors.Join(errs...)
}

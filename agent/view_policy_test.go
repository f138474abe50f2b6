package agent

import (
	"os"
	"os/exec"
	"testing"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/notify"
)

// TestPolicyFinder: an exec'd job's seccompagent.io/cpus applies to it and
// to its descendants, and to nobody else.
func TestPolicyFinder(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()

	job := &notify.Container{ID: "exec-x", InitPid: os.Getpid(), Annotations: map[string]string{affinity.Annotation: "3"}}
	attachedNow := []*notify.Container{job}
	f := &policyFinder{procRoot: "/proc", selfNS: self, containers: func() []*notify.Container { return attachedNow }}
	for _, pid := range []int{os.Getpid(), child.Process.Pid} {
		if got := f.policy(pid); got != (affinity.Policy{Count: 3}) {
			t.Errorf("pid %d: %+v, want the job's count 3", pid, got)
		}
	}
	if got := f.policy(os.Getppid()); got != (affinity.Policy{}) {
		t.Errorf("the job's parent: %+v, want the default", got)
	}
	attachedNow = nil
	if got := f.policy(child.Process.Pid); got != (affinity.Policy{}) {
		t.Errorf("after detach: %+v, want the default", got)
	}
}

package e2e

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
	"golang.org/x/sys/unix"
)

// TestHostileConnections: malformed peers on the agent socket are rejected
// with a clear log line, every fd they sent is closed, and the agent keeps
// serving containers.
func TestHostileConnections(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	a := startAgent(t)
	fdsBefore := agentFds(t, a)

	dial := func() *net.UnixConn {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: a.Socket, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pipeFds := func(n int) []int {
		var fds []int
		for i := 0; i < n; i++ {
			p := make([]int, 2)
			if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			fds = append(fds, p[0])
		}
		return fds
	}
	send := func(payload []byte, fds []int) {
		c := dial()
		defer c.Close()
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		c.WriteMsgUnix(payload, oob, nil)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	send([]byte("not json at all"), pipeFds(3))
	send([]byte(`{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"state":{"id":"x","status":"creating","pid":1,"bundle":"/"}}`), pipeFds(2))
	send([]byte(`{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"state":{"id":"x","status":"creating","pid":1,"bundle":"/"}}`), nil)
	send(make([]byte, 2<<20), nil) // larger than any real state
	// A well-formed state with one fd that is no seccomp listener (the
	// write end of a pipe nobody reads: poll says POLLERR, forever).
	{
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[0])
		send([]byte(`{"ociVersion":"1.0.2","fds":["seccompFd"],"pid":1,"state":{"id":"not-a-listener","status":"creating","pid":1,"bundle":"/"}}`), []int{p[1]})
	}
	hang := dial() // connects and never sends: must time out, not block others
	defer hang.Close()

	// A real container is still served while the silent peer hangs.
	b := limitedBundle(t, []string{"nproc"}, a.Socket)
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	out, stderr, err := rt.Run(ctx, b, "e2e-"+harness.UniqueID())
	if err != nil {
		t.Fatalf("container after hostile peers: %v\n%s%s", err, stderr, agentLog(a))
	}
	if n, _ := harness.ParseNproc(out); n != wantCPUs {
		t.Errorf("nproc = %q after hostile peers, want %d%s", out, wantCPUs, agentLog(a))
	}
	hang.Close()

	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := a.Logs()
		if strings.Count(logs, "rejected connection") >= 5 && strings.Contains(logs, "not a seccomp listener") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expected 5 rejected connections in the agent log, one for a fd that is not a seccomp listener%s", agentLog(a))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The agent closes each connection (and every fd it carried) as it
	// rejects it; the silent one goes when it notices the hang-up.
	for after := agentFds(t, a); after > fdsBefore; after = agentFds(t, a) {
		if time.Now().After(deadline) {
			t.Fatalf("agent holds %d fds after the hostile peers, %d before: received fds leaked%s", after, fdsBefore, agentLog(a))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if exited, _ := a.Exited(); exited {
		t.Fatalf("agent exited%s", agentLog(a))
	}
}

func agentFds(t *testing.T, a *harness.Agent) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(a.Pid()) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

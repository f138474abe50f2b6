package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/seccompagent/seccompagent/test/harness"
	"github.com/seccompagent/seccompagent/test/testenv"
)

var (
	viewOnce   sync.Once
	viewRootfs string
	viewMounts []specs.Mount
	wrapperBin string
	viewErr    error
)

// askScript writes its first argument to the view socket (as a hostile
// peer would: "tell me about pid N") and prints whatever comes back. A peer
// that writes is reset after the document, so the reset is not an error.
const askScript = `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("/run/seccompagent/view.sock")
try:
    s.sendall(sys.argv[1].encode())
except OSError:
    pass
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:
        break
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
`

// buildViewRootfs is the test rootfs plus the examples/view clients and
// the mount points for the host's /usr (Python and Java run from there).
func buildViewRootfs(t *testing.T) (string, []specs.Mount) {
	t.Helper()
	_, err := harness.HostProgram(hostPython, "python3")
	testenv.Require(t, err == nil, fmt.Sprint(err))
	_, err = harness.HostProgram(hostJava, "openjdk-17-jre-headless")
	testenv.Require(t, err == nil, fmt.Sprint(err))
	testenv.RequireCommand(t, "musl-gcc")
	viewOnce.Do(func() {
		viewRootfs = filepath.Join(workDir, "view-rootfs")
		if viewErr = harness.BuildRootfs(viewRootfs); viewErr != nil {
			return
		}
		if viewErr = harness.InstallViewExamples(viewRootfs, hostJava); viewErr != nil {
			return
		}
		if viewErr = os.WriteFile(filepath.Join(viewRootfs, harness.ViewExamplesDir, "ask.py"), []byte(askScript), 0o644); viewErr != nil {
			return
		}
		if viewMounts, viewErr = harness.HostProgramMounts(viewRootfs); viewErr != nil {
			return
		}
		wrapperBin, viewErr = harness.BuildWrapper(filepath.Join(workDir, "bin"))
	})
	if viewErr != nil {
		t.Fatalf("view rootfs: %v", viewErr)
	}
	return viewRootfs, viewMounts
}

// viewBundle is a limited container on the view rootfs.
func viewBundle(t *testing.T, mem int64, args ...string) *harness.Bundle {
	t.Helper()
	rootfs, mounts := buildViewRootfs(t)
	b, err := harness.NewBundle(t.TempDir(), rootfs, harness.BundleOptions{
		Args: args, MemoryLimit: mem, CPUQuota: cpuQuota, CPUPeriod: cpuPeriod,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddMounts(mounts...); err != nil {
		t.Fatal(err)
	}
	return b
}

// runWrapped runs b through seccompagent-runtime (enabled by default,
// agent a): it adds the notify rules, listenerPath and the view directory
// mounted at /run/seccompagent, then execs rt.
func runWrapped(t *testing.T, rt harness.Runtime, a *harness.Agent, b *harness.Bundle) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	stdout, stderr, err := rt.RunThroughWrapper(ctx, b, "view-"+harness.UniqueID(), wrapperBin,
		"--seccompagent-socket="+a.Socket, "--seccompagent-default=enabled")
	if err != nil {
		t.Fatalf("%s container through seccompagent-runtime: %v\nstdout:\n%s\nstderr:\n%s%s", rt, err, stdout, stderr, agentLog(a))
	}
	return stdout, stderr
}

var viewClients = []string{
	harness.ViewExamplesDir + "/view-c",
	harness.ViewExamplesDir + "/view-go",
	hostPython + " " + harness.ViewExamplesDir + "/view.py",
	hostJava + " -cp " + harness.ViewExamplesDir + " View",
}

// TestViewExamples runs the C, Go, Python and Java clients of
// examples/view inside a container limited to 256 MiB and half a CPU: each
// reads the container's own numbers from the view socket.
func TestViewExamples(t *testing.T) {
	for _, rt := range harness.Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			requireE2E(t, rt)
			a := startAgent(t)
			b := viewBundle(t, memLimit, harness.SectionedCommand(viewClients...)...)
			stdout, stderr := runWrapped(t, rt, a, b)
			t.Logf("%s:\n%s", rt, stdout)
			sec := harness.SplitSections(stdout)
			want := fmt.Sprintf("cpu count %d\nmemory total %d\n", wantCPUs, memLimit)
			for _, c := range viewClients {
				if got := sec[c]; got != want {
					t.Errorf("%s printed %q, want %q\nstderr:\n%s", c, got, want, stderr)
				}
			}
		})
	}
}

// TestViewIsolation: a process asks about another container (its pid and
// pid 1, written to the socket) and still learns only its own view.
func TestViewIsolation(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	a := startAgent(t)
	other := viewBundle(t, memLimit, "sleep", "1000")
	otherID := "view-other-" + harness.UniqueID()
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	if err := rt.StartDetached(ctx, other, otherID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.KillDelete(other, otherID); err != nil {
			t.Errorf("kill/delete: %v", err)
		}
	})
	otherPid, err := rt.InitPid(ctx, other, otherID)
	if err != nil {
		t.Fatal(err)
	}
	const mine = 128 << 20
	ask := hostPython + " " + harness.ViewExamplesDir + "/ask.py"
	cmds := []string{ask + fmt.Sprintf(` '{"pid": %d}'`, otherPid), ask + ` 'pid 1'`}
	b := viewBundle(t, mine, harness.SectionedCommand(cmds...)...)
	stdout, stderr := runWrapped(t, rt, a, b)
	for _, c := range cmds {
		out := harness.SplitSections(stdout)[strings.ReplaceAll(c, "'", "")]
		var doc struct {
			Pid    int `json:"pid"`
			Memory struct {
				Total uint64 `json:"total"`
			} `json:"memory"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Errorf("%s: %v in %q\nstderr:\n%s", c, err, out, stderr)
			continue
		}
		// The asking process is python, a child of the container's sh
		// (pid 1): its own pid, never the other container's.
		if doc.Memory.Total != mine || doc.Pid <= 1 || strings.Contains(out, other.CgroupsPath) {
			t.Errorf("%s: got %s\nwant this container's view (memory %d, cgroup %s), never %s's", c, out, mine, b.CgroupsPath, other.CgroupsPath)
		}
	}
}

// TestViewSurvivesAgentRestart: the wrapper mounts the view socket's
// directory, so a container keeps reaching the view after the agent is
// restarted (and its socket re-created, a new inode). A bind mount of the
// socket file itself, the alternative, keeps pointing at the old socket:
// the control checks that this is indeed what runc does.
func TestViewSurvivesAgentRestart(t *testing.T) {
	rt := harness.Runc
	requireE2E(t, rt)
	a := startAgent(t)
	b := viewBundle(t, memLimit, "sleep", "1000")
	viewSock := filepath.Join(filepath.Dir(a.Socket), "view", "view.sock")
	if err := b.AddMounts(specs.Mount{Destination: "/tmp/file-bound.sock", Type: "bind", Source: viewSock,
		Options: []string{"bind", "ro"}}); err != nil {
		t.Fatal(err)
	}
	// The wrapper's modifier, applied as `seccompagent inject` does (the
	// wrapper cannot start a detached container here and return).
	if out, err := exec.Command(requireAgent(t), "inject", "--bundle", b.Dir, "--socket", a.Socket).CombinedOutput(); err != nil {
		t.Fatalf("inject: %v\n%s", err, out)
	}
	id := "view-restart-" + harness.UniqueID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*containerTimeout)
	defer cancel()
	if err := rt.StartDetached(ctx, b, id); err != nil {
		t.Fatal(err)
	}
	killed := false
	killDelete := func() {
		if !killed {
			killed = true
			if err := rt.KillDelete(b, id); err != nil {
				t.Errorf("kill/delete: %v", err)
			}
		}
	}
	t.Cleanup(killDelete)
	client := harness.ViewExamplesDir + "/view-c"
	want := fmt.Sprintf("cpu count %d\nmemory total %d\n", wantCPUs, memLimit)
	for _, sock := range []string{"/run/seccompagent/view.sock", "/tmp/file-bound.sock"} {
		if out, stderr, err := rt.Exec(ctx, b, id, client, sock); err != nil || out != want {
			t.Fatalf("before the restart, %s: %v %q %s", sock, err, out, stderr)
		}
	}
	// SIGKILL: the socket file stays behind and the next agent replaces it
	// with a new one. (sigterm would do the same, but an agent with an idle
	// container currently needs more than the harness's 5 s to stop.)
	restartAgent(t, a, "sigkill", harness.AgentOptions{})
	out, stderr, err := rt.Exec(ctx, b, id, client)
	if err != nil || out != want {
		t.Errorf("after the restart, through the directory mount: %v %q %s", err, out, stderr)
	}
	if _, stderr, err := rt.Exec(ctx, b, id, client, "/tmp/file-bound.sock"); err == nil || !strings.Contains(stderr, "Connection refused") {
		t.Errorf("after the restart, a file bind mount of the socket still worked (%v, %q): the directory mount would not be needed", err, stderr)
	}
	// Before the agents are stopped (the container's listener idle in
	// the agent slows its stop down).
	killDelete()
}

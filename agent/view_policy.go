package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/notify"
)

// policyFinder tells the view socket which seccompagent.io/cpus applies to a
// process, so that its recommended thread count is what its own
// sched_getaffinity shows.
type policyFinder struct {
	procRoot string
	selfNS   string // the agent's pid namespace
	// containers lists the attached containers (and exec jobs).
	containers func() []*notify.Container

	mu sync.Mutex
	ns map[*notify.Container]string // pid namespace of each init, cached
}

// containers snapshots what the server serves.
func (s *Server) containers() []*notify.Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*notify.Container, 0, len(s.attached))
	for _, a := range s.attached {
		out = append(out, a.loop.Container)
	}
	return out
}

// policy finds the container pid belongs to: the one whose init shares its
// pid namespace (when that is not the agent's own), else the nearest
// ancestor that is an attached init (an exec'd job and its children). A
// process that belongs to none gets the default, quota.
func (f *policyFinder) policy(pid int) affinity.Policy {
	cs := f.containers()
	byNS := map[string]*notify.Container{}
	byInit := map[int]*notify.Container{}
	f.mu.Lock()
	if f.ns == nil || len(f.ns) > 2*len(cs)+16 {
		f.ns = map[*notify.Container]string{} // forget detached ones
	}
	for _, c := range cs {
		if c.InitPid <= 0 {
			continue
		}
		byInit[c.InitPid] = c
		ns, ok := f.ns[c]
		if !ok {
			ns, _ = os.Readlink(filepath.Join(f.procRoot, strconv.Itoa(c.InitPid), "ns/pid"))
			f.ns[c] = ns
		}
		if ns != "" && ns != f.selfNS {
			byNS[ns] = c
		}
	}
	f.mu.Unlock()
	var c *notify.Container
	if ns, err := os.Readlink(filepath.Join(f.procRoot, strconv.Itoa(pid), "ns/pid")); err == nil && ns != f.selfNS {
		c = byNS[ns]
	}
	for p, i := pid, 0; c == nil && p > 1 && i < 64; i++ {
		if c = byInit[p]; c == nil {
			p = parentPid(f.procRoot, p)
		}
	}
	if c == nil {
		return affinity.Policy{}
	}
	p, _ := affinity.ParsePolicy(c.Annotations[affinity.Annotation])
	return p
}

// parentPid is PPid from /proc/<pid>/status, 0 when unknown.
func parentPid(procRoot string, pid int) int {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

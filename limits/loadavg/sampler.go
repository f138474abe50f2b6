package loadavg

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Interval is the kernel's LOAD_FREQ (5 s) and LXCFS's FLUSH_TIME.
const Interval = 5 * time.Second

// Sampler keeps the load average of every registered container.
type Sampler struct {
	// ProcRoot is the procfs mount ("/proc") the cgroups' pids refer to.
	ProcRoot string
	// Resolve returns the cgroup directory whose tasks count for the
	// container whose init is pid (limits.Reader.LoadCgroup). It runs at
	// every sample: crun attaches the container before moving its init
	// into the container's cgroup.
	Resolve func(pid int) (string, error)
	Log     *logrus.Entry

	mu     sync.Mutex
	groups map[int]*group // by init pid
}

type group struct {
	refs    int
	avenrun Avenrun
}

// Register starts averaging the container whose init is pid; the average
// starts at 0, as LXCFS's does when a container first reads it. Every
// connection of a container registers; release undoes one Register.
func (s *Sampler) Register(pid int) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[int]*group{}
	}
	g := s.groups[pid]
	if g == nil {
		g = &group{}
		s.groups[pid] = g
	}
	g.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if g.refs--; g.refs == 0 && s.groups[pid] == g {
				delete(s.groups, pid)
			}
		})
	}
}

// Loads returns the average of the container whose init is pid, and false
// when it is not registered.
func (s *Sampler) Loads(pid int) (Avenrun, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[pid]
	if !ok {
		return Avenrun{}, false
	}
	return g.avenrun, true
}

// Run samples every Interval until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// Sample counts every registered container's active threads once and
// folds them into its average. A container whose cgroup cannot be read
// this time keeps its average unchanged (LXCFS skips it the same way).
func (s *Sampler) Sample() {
	s.mu.Lock()
	pids := make([]int, 0, len(s.groups))
	for pid := range s.groups {
		pids = append(pids, pid)
	}
	s.mu.Unlock()
	for _, pid := range pids {
		dir, err := s.Resolve(pid)
		var c Counts
		if err == nil {
			c, err = Count(s.ProcRoot, dir)
		}
		if err != nil {
			if s.Log != nil {
				s.Log.WithFields(logrus.Fields{"pid": pid, "err": err}).Debug("loadavg: cannot sample the container's cgroup")
			}
			continue
		}
		s.mu.Lock()
		if g := s.groups[pid]; g != nil {
			g.avenrun = g.avenrun.Next(uint64(c.Active))
		}
		s.mu.Unlock()
	}
}

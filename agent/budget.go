package agent

import (
	"runtime"
	"sync"

	"github.com/seccompagent/seccompagent/limits"
	"github.com/seccompagent/seccompagent/notify"
)

// receiversPerListener bounds how many notifications of one listener are
// answered at once (notify.Loop.Receivers): enough for a container's
// threads to overlap, few enough that a thousand busy listeners stay a few
// thousand threads, and never more than the CPUs the agent runs on: more
// receivers than CPUs only switch between each other (measured with
// `make bench`, 8 threads of one container on 2 CPUs: 4 receivers
// 75–110k calls/s, 2 receivers 108–145k/s, against 90k/s for one thread).
var receiversPerListener = min(4, runtime.GOMAXPROCS(0))

// budgetFactor is the agent time a container may take as a multiple of its
// own CPU quota (notify.Budget.Factor).
const budgetFactor = 1.0

// budgets hands out one notify.Budget per container id, shared by the
// container's init listener and every exec's, and forgets it with the
// last of them.
type budgets struct {
	mu sync.Mutex
	m  map[string]*sharedBudget
}

type sharedBudget struct {
	b    *notify.Budget
	refs int
}

// acquire returns the container's budget, reading its quota from the
// cgroup of initPid (0: unknown, then nothing is bounded).
func (bs *budgets) acquire(id string, initPid int, reader *limits.Reader) *notify.Budget {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[string]*sharedBudget{}
	}
	if s := bs.m[id]; s != nil {
		s.refs++
		return s.b
	}
	b := &notify.Budget{Factor: budgetFactor, Allowance: func() (float64, bool) {
		if initPid == 0 {
			return 0, false
		}
		cpu, err := reader.CPU(initPid)
		if err != nil || !cpu.Count.Limited || cpu.PeriodUS <= 0 {
			return 0, false
		}
		return float64(cpu.QuotaUS) / float64(cpu.PeriodUS), true
	}}
	bs.m[id] = &sharedBudget{b: b, refs: 1}
	return b
}

func (bs *budgets) release(id string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if s := bs.m[id]; s != nil {
		if s.refs--; s.refs <= 0 {
			delete(bs.m, id)
		}
	}
}

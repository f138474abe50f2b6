package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/seccompagent/seccompagent/test/harness"
)

// restart measures what a crash costs with n listeners attached: the agent
// is SIGKILLed, a listener is created while none runs (the holder takes its
// connection), and a new agent is started on the same socket. Re-attach is
// SIGKILL to the new agent's "serving" line (logged once every adopted
// listener is being received from); the gap is SIGKILL to the first answer
// the new listener gets.
func (b *bench) restart(bin string) error {
	for _, n := range []int{1, 50, 1000} {
		dir, err := os.MkdirTemp(b.tmp, "restart-")
		if err != nil {
			return err
		}
		opts := harness.AgentOptions{Args: []string{"--log-level", "info"}}
		a, err := harness.StartAgentWith(b.ctx, bin, filepath.Join(dir, "agent.sock"), opts)
		if err != nil {
			return err
		}
		set, err := b.attach(a, n, "bench-restart")
		if err != nil {
			_ = a.Stop()
			return err
		}
		t0 := time.Now()
		a.Kill()
		type attached struct {
			ls  *listenerSet
			err error
			at  time.Duration
		}
		probe := make(chan attached, 1)
		go func() {
			ls, err := b.attach(a, 1, "bench-restart-probe")
			probe <- attached{ls, err, time.Since(t0)}
		}()
		a2, err := harness.StartAgentWith(b.ctx, bin, a.Socket, opts)
		reattach := time.Since(t0)
		if err != nil {
			set.stop()
			return err
		}
		p := <-probe
		// The listeners, the one created meanwhile if the holder took it,
		// and a self-test listener the first agent may have left.
		adopted := 0
		if m := adoptedRe.FindAllStringSubmatch(a2.Logs(), -1); m != nil {
			adopted, _ = strconv.Atoi(m[len(m)-1][1]) // the new agent's line
		}
		set.stop()
		if p.ls != nil {
			p.ls.stop()
		}
		_ = a2.Stop()
		if p.err != nil {
			return fmt.Errorf("listener created during the restart: %w", p.err)
		}
		if adopted < n {
			return fmt.Errorf("the new agent adopted %d listeners, want at least %d", adopted, n)
		}
		b.add(row{figure: fmt.Sprintf("restart after SIGKILL, %d attached: re-attach all", n), value: ms(reattach),
			ref: "SIGKILL → new agent serving"})
		b.add(row{figure: "  first answer to a container created meanwhile", value: ms(p.at), ref: "SIGKILL → answered"})
	}
	return nil
}

var adoptedRe = regexp.MustCompile(`seccompagent serving.* adopted=(\d+)`)

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

package agent

import (
	"os"
	"sync/atomic"

	"github.com/seccompagent/seccompagent/notify"
	"github.com/sirupsen/logrus"
)

// EnvTestStall, set to "1" in the agent's environment, makes the first
// notification it receives stall forever right after it is journaled: the
// restart tests kill the agent at exactly the moment the kernel considers
// the notification received and unanswered. Never set it in production.
const EnvTestStall = "SECCOMPAGENT_TEST_STALL_FIRST_NOTIFICATION"

var stalled atomic.Bool

type stallJournal struct {
	notify.Journal
	log *logrus.Entry
}

func (s stallJournal) Received(p *notify.Pending) {
	s.Journal.Received(p)
	if stalled.CompareAndSwap(false, true) {
		s.log.WithField("id", p.ID).Warn("test hook: stalling with a received notification in hand")
		select {}
	}
}

func testStall(j notify.Journal, log *logrus.Entry) notify.Journal {
	if os.Getenv(EnvTestStall) != "1" {
		return j
	}
	return stallJournal{Journal: j, log: log}
}

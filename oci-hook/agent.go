package ocihook

import (
	"fmt"
	"net"
	"time"
)

// AgentTimeout bounds CheckAgent: a container start must not hang on it.
const AgentTimeout = 2 * time.Second

// AgentError says the agent's socket did not accept a connection.
type AgentError struct {
	Socket string
	Err    error
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("seccompagent socket %s not reachable: is \"seccompagent serve\" running?", e.Socket)
}

func (e *AgentError) Unwrap() error { return e.Err }

// CheckAgent connects to the agent's socket and hangs up. A container whose
// profile has a listenerPath does not start when nothing listens there, so
// callers check before handing the container to the runtime. The agent sees
// a connection without data, which it already tolerates (crun does the same
// when its container setup fails).
func CheckAgent(socketPath string) error {
	conn, err := net.DialTimeout("unix", socketPath, AgentTimeout)
	if err != nil {
		return &AgentError{Socket: socketPath, Err: err}
	}
	return conn.Close()
}

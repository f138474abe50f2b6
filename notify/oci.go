package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// MaxStateSize bounds the ContainerProcessState a runtime may send. Real
// ones are a few KiB (annotations included).
const MaxStateSize = 1 << 20

// ErrNoData is returned for a connection that closed without sending
// anything: crun connects before setting up cgroups and hangs up when that
// fails.
var ErrNoData = errors.New("runtime closed the connection without sending a container state")

// Received is one runtime-spec seccomp listener message.
type Received struct {
	State specs.ContainerProcessState
	// Fd is the seccomp listener fd, opened close-on-exec. The caller owns it.
	Fd int
}

// ReceiveState reads one ContainerProcessState and its fds from conn, as runc
// and crun send them to linux.seccomp.listenerPath (runtime-spec
// config-linux.md, "seccomp"). It accepts exactly one fd named "seccompFd";
// every fd received is closed on any error, and only the seccomp fd survives.
func ReceiveState(conn *net.UnixConn, timeout time.Duration) (*Received, error) {
	if timeout > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
	}
	var (
		data []byte
		fds  []int
		buf  = make([]byte, 64<<10)
		oob  = make([]byte, unix.CmsgSpace(64*4))
	)
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for {
		// Go's net package passes MSG_CMSG_CLOEXEC on Linux, so no
		// received fd can leak into a child before we close it.
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			got, perr := parseRights(oob[:oobn])
			fds = append(fds, got...)
			if perr != nil {
				closeAll()
				return nil, perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			closeAll()
			return nil, errors.New("too many file descriptors in one message (control data truncated)")
		}
		// Go reports n = -1 with an error (a read deadline, a reset):
		// nothing was read.
		n = max(n, 0)
		data = append(data, buf[:n]...)
		if len(data) > MaxStateSize {
			closeAll()
			return nil, fmt.Errorf("container state larger than %d bytes", MaxStateSize)
		}
		if err != nil || n == 0 {
			if err != nil && !isEOF(err) {
				closeAll()
				return nil, fmt.Errorf("read container state: %w", err)
			}
			break
		}
		// runc and crun send the whole state in one message and close;
		// a complete JSON document lets us stop without waiting for EOF.
		if json.Valid(data) {
			break
		}
	}
	if len(data) == 0 && len(fds) == 0 {
		return nil, ErrNoData
	}
	var st specs.ContainerProcessState
	if err := json.Unmarshal(data, &st); err != nil {
		closeAll()
		return nil, fmt.Errorf("decode container state (%d bytes): %w", len(data), err)
	}
	idx := -1
	for i, name := range st.Fds {
		if name == specs.SeccompFdName {
			if idx >= 0 {
				closeAll()
				return nil, fmt.Errorf("container state names %q twice", specs.SeccompFdName)
			}
			idx = i
		}
	}
	switch {
	case idx < 0:
		closeAll()
		return nil, fmt.Errorf("container state has no %q in fds %q", specs.SeccompFdName, st.Fds)
	case len(fds) != 1 || len(st.Fds) != 1:
		closeAll()
		return nil, fmt.Errorf("expected exactly one fd (%s), got %d fds named %q", specs.SeccompFdName, len(fds), st.Fds)
	}
	return &Received{State: st, Fd: fds[0]}, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("parse SCM_RIGHTS: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET)
}

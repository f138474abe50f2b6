package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The hand-over protocol between an agent and the holder (and between two
// holders). It runs over a SOCK_SEQPACKET unix socket, root only: every
// message is one JSON frame, with at most one fd in SCM_RIGHTS.
//
//	agent  → holder  hello{role:"agent"}           I serve now
//	holder → agent   handover                      (to the agent serving until now) stop and exit
//	holder → agent   entry{kind,key,meta} + fd …   everything held, then
//	holder → agent   ready{previous}
//	agent  → holder  put{kind,key,meta} + fd       keep this (replaces the same key)
//	agent  → holder  drop{key}                     forget this
//	holder → holder  hello{role:"holder"}          the new holder takes everything; the old one exits
//
// The holder keeps the fds and their metadata without understanding them,
// except that it closes a listener whose filter has no users left
// (EPOLLHUP) and, while no agent is connected, accepts runtime connections
// itself so that containers created during a restart wait instead of fail.
const handoffVersion = 1

// Kinds of held fds.
const (
	kindListener = "listener" // a container's seccomp listener
	kindSocket   = "socket"   // the listening socket runtimes connect to
	kindJournal  = "journal"  // the memfd of journal.go
)

type frame struct {
	Op      string          `json:"op"`
	Version int             `json:"version,omitempty"`
	Role    string          `json:"role,omitempty"`
	Kind    string          `json:"kind,omitempty"`
	Key     uint64          `json:"key,omitempty"`
	Meta    json.RawMessage `json:"meta,omitempty"`
	// Previous (ready) says how the agent before this one ended:
	// "none", "exited" (it said bye) or "lost" (its connection just ended).
	Previous string `json:"previous,omitempty"`
}

// listenerMeta is what the agent knows about a container's listener, kept
// by the holder with the fd.
type listenerMeta struct {
	State specs.ContainerProcessState `json:"state"`
	// Slot is the listener's journal slot, -1 for none.
	Slot  int       `json:"slot"`
	Since time.Time `json:"since"`
	// Runtime names the process that connected (runc, crun), for status.
	Runtime string `json:"runtime,omitempty"`
}

// maxFrame bounds one message: a container state (notify.MaxStateSize)
// plus the frame around it.
const maxFrame = 1<<20 + 64<<10

func sendFrame(fd int, f frame, passFd int) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	var oob []byte
	if passFd >= 0 {
		oob = unix.UnixRights(passFd)
	}
	for {
		err = unix.Sendmsg(fd, b, oob, nil, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			return err
		}
	}
}

// recvFrame reads one frame and the fd that came with it (-1 if none). The
// fd is close-on-exec; frames with more than one fd are refused.
func recvFrame(fd int) (frame, int, error) { return recvFrameFlags(fd, 0) }

// recvFrameFlags is recvFrame with extra recvmsg flags (MSG_DONTWAIT).
func recvFrameFlags(fd, extra int) (frame, int, error) {
	buf := make([]byte, maxFrame)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC|extra)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return frame{}, -1, err
	}
	var fds []int
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	closeAll := func() {
		for _, f := range fds {
			unix.Close(f)
		}
	}
	if n == 0 && oobn == 0 {
		return frame{}, -1, errEOF
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || len(fds) > 1 {
		closeAll()
		return frame{}, -1, errors.New("hand-over frame too large or with more than one fd")
	}
	var f frame
	if err := json.Unmarshal(buf[:n], &f); err != nil {
		closeAll()
		return frame{}, -1, fmt.Errorf("decode hand-over frame: %w", err)
	}
	if len(fds) == 1 {
		return f, fds[0], nil
	}
	return f, -1, nil
}

var errEOF = errors.New("peer closed the hand-over connection")

// seqpacketSocket makes a close-on-exec SOCK_SEQPACKET socket with buffers
// large enough for maxFrame (root may exceed the sysctl limits).
func seqpacketSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	setBuffers(fd)
	return fd, nil
}

func setBuffers(fd int) {
	for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 4*maxFrame)
	}
}

// dialHolder connects to the holder's socket.
func dialHolder(path string) (int, error) {
	fd, err := seqpacketSocket()
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// peerCred returns the connected peer's credentials.
func peerCred(fd int) (*unix.Ucred, error) {
	return unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
}

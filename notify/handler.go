package notify

import (
	"fmt"
	"syscall"
)

// Container is what the runtime told us about the container a listener fd
// belongs to (from its ContainerProcessState).
type Container struct {
	ID          string
	InitPid     int // the container's init, in the agent's pid namespace
	Annotations map[string]string
}

// Memory writes into the trapped thread's address space. notify opened it
// before validating the notification id, so it can only ever reach that
// thread's memory.
type Memory interface {
	// Write copies p to addr the way copy_to_user would: a destination that
	// is not fully mapped writable gets the bytes up to the first bad page
	// and the call returns syscall.EFAULT.
	Write(addr uint64, p []byte) error
}

// Request is the narrow view of one trapped syscall a handler gets.
type Request struct {
	ID  uint64
	Tid int // the trapped thread, in the agent's pid namespace
	ABI ABI
	Nr  int32
	// Args are the raw syscall arguments; for compat callers only the low
	// 32 bits are meaningful.
	Args      [6]uint64
	Container *Container
	Mem       Memory
}

// Response is a handler's answer: either let the kernel run the real syscall
// (Continue) or return Val / fail with Errno.
type Response struct {
	Continue bool
	Val      int64
	Errno    syscall.Errno
}

// Continue lets the kernel answer: the fail-open response.
func Continue() Response { return Response{Continue: true} }

// Return makes the syscall return v.
func Return(v int64) Response { return Response{Val: v} }

// Fail makes the syscall fail with errno.
func Fail(errno syscall.Errno) Response { return Response{Errno: errno} }

func (r Response) String() string {
	switch {
	case r.Continue:
		return "continue"
	case r.Errno != 0:
		return fmt.Sprintf("errno %d (%v)", int(r.Errno), r.Errno)
	default:
		return fmt.Sprintf("return %d", r.Val)
	}
}

// Handler answers one kind of trapped syscall.
type Handler interface {
	Handle(req *Request) Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(req *Request) Response

// Handle calls f.
func (f HandlerFunc) Handle(req *Request) Response { return f(req) }

var _ Handler = HandlerFunc(nil)

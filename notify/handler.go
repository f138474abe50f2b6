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

// Memory writes into the trapped thread's address space, with the kernel's
// own permission checks at the moment of the write. It revalidates the
// notification id just before writing.
type Memory interface {
	// Write copies all of p to addr, or returns an error (wrapping
	// ErrKernelAnswers) when it could not: the destination is not plainly
	// writable, or the notification is gone. The handler must then answer
	// Continue, and the loop does so whatever the handler returns: the
	// kernel's own copy_to_user gives the exact result (its EFAULT and
	// partial copy, or a stack it grows).
	Write(addr uint64, p []byte) error
}

// Request is the narrow view of one trapped syscall a handler gets. It is
// valid until Handle returns: the receiver reuses it.
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

	scratch []byte // the receiver's, for Buffer
}

// Buffer returns n zeroed bytes for the handler's answer. They are the
// handler's until it returns: its receiver reuses them for its next
// notification, so a handler answers without an allocation. It is one
// buffer: a second call zeroes and returns the same bytes.
func (r *Request) Buffer(n int) []byte {
	if n > len(r.scratch) {
		return make([]byte, n)
	}
	b := r.scratch[:n]
	clear(b)
	return b
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

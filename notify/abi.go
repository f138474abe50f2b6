package notify

import (
	"fmt"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// ABI is the calling convention of a trapped syscall.
type ABI struct {
	Name string
	// Audit is the AUDIT_ARCH_* value the kernel reports in seccomp_data.
	Audit uint32
	// Compat is true for callers that get the kernel's compat (32-bit)
	// structures: i386. x32 calls the native 64-bit entry points for the
	// syscalls we trap, so it is not Compat.
	Compat bool
	// LongSize is sizeof(long) as the kernel's entry point sees it.
	LongSize int

	scmp seccomp.ScmpArch
}

// The ABIs a container on x86_64 can use. x32 shares AUDIT_ARCH_X86_64 and
// is told apart by __X32_SYSCALL_BIT in the syscall number.
var (
	AMD64 = ABI{Name: "x86_64", Audit: unix.AUDIT_ARCH_X86_64, LongSize: 8, scmp: seccomp.ArchAMD64}
	I386  = ABI{Name: "i386", Audit: unix.AUDIT_ARCH_I386, Compat: true, LongSize: 4, scmp: seccomp.ArchX86}
	X32   = ABI{Name: "x32", Audit: unix.AUDIT_ARCH_X86_64, LongSize: 8, scmp: seccomp.ArchX32}
)

// ABIs lists every ABI the agent answers for.
var ABIs = []ABI{AMD64, I386, X32}

// Key identifies a syscall as the kernel reports it.
type Key struct {
	Audit uint32
	Nr    int32
}

type entry struct {
	abi     ABI
	name    string
	handler Handler
}

// Registry maps (arch, nr) to handlers. Build it with Register; it is
// read-only once a loop runs.
type Registry struct {
	m map[Key]entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[Key]entry{}} }

// Register installs h for the syscall called name on every ABI in ABIs,
// resolving the numbers through libseccomp so that no table is written by
// hand (i386 sysinfo is 116, x32 is nr|0x40000000).
func (r *Registry) Register(name string, h Handler) error {
	for _, abi := range ABIs {
		nr, err := seccomp.GetSyscallFromNameByArch(name, abi.scmp)
		if err != nil {
			return fmt.Errorf("resolve syscall %s on %s: %w", name, abi.Name, err)
		}
		r.m[Key{abi.Audit, int32(nr)}] = entry{abi: abi, name: name, handler: h}
	}
	return nil
}

func (r *Registry) lookup(audit uint32, nr int32) (entry, bool) {
	e, ok := r.m[Key{audit, nr}]
	return e, ok
}

package notify

import (
	"fmt"
	"sync"

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

// ABIs lists every ABI the agent can answer for. A registry covers those
// the running kernel executes (RunnableABIs).
var ABIs = []ABI{AMD64, I386, X32}

// runnableABIs keeps the ABIs whose syscalls the kernel executes. x32 is a
// build option (CONFIG_X86_X32_ABI) and, on kernels that have it, a boot
// option (syscall.x32=, Debian and Ubuntu default to off): without it an x32
// syscall fails with ENOSYS, so the agent must not answer it. haveX32 is
// the probe. i386 needs no probe: a kernel without ia32 emulation never
// delivers an i386 notification.
func runnableABIs(haveX32 func() bool) []ABI {
	var out []ABI
	for _, abi := range ABIs {
		if abi.Name == X32.Name && !haveX32() {
			continue
		}
		out = append(out, abi)
	}
	return out
}

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
	m    map[Key]entry
	abis []ABI
}

// NewRegistry returns an empty registry for the ABIs the running kernel
// executes (probed once per process). A syscall of any other ABI finds no
// handler and is answered with Continue: the kernel's own ENOSYS.
func NewRegistry() *Registry { return newRegistry(RunnableABIs()) }

func newRegistry(abis []ABI) *Registry { return &Registry{m: map[Key]entry{}, abis: abis} }

// Register installs h for the syscall called name on every runnable ABI,
// resolving the numbers through libseccomp so that no table is written by
// hand (i386 sysinfo is 116, x32 is nr|0x40000000).
func (r *Registry) Register(name string, h Handler) error {
	for _, abi := range r.abis {
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

// RunnableABIs returns the ABIs the running kernel executes, probed on first
// use.
var RunnableABIs = sync.OnceValue(func() []ABI { return runnableABIs(KernelRunsX32) })

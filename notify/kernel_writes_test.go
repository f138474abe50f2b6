package notify_test

// Writes into the trapped thread, compared with the kernel's own answer
// measured in the same run: the child first makes every call natively, then
// installs the filter and makes them again, answered by the agent.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/seccompagent/seccompagent/handlers/affinity"
	"github.com/seccompagent/seccompagent/handlers/sysinfo"
	"github.com/seccompagent/seccompagent/notify"
	"github.com/seccompagent/seccompagent/test/testenv"
	"golang.org/x/sys/unix"
)

// writeCase is one destination, measured twice per phase (canaries 0xAA and
// 0x55) so that a written byte is told from an untouched one whatever its
// value.
type writeCase struct {
	Ret   int64  `json:"ret"`
	Errno int    `json:"errno"`
	Mask  []bool `json:"mask"` // which readable destination bytes were written
	Buf   []byte `json:"buf"`  // the destination after the 0xAA run
	// Unavailable names a kernel feature the case needs and the kernel
	// lacks; Why says how that showed.
	Unavailable string `json:"unavailable,omitempty"`
	Why         string `json:"why,omitempty"`
}

// raceCase counts the outcomes of sysinfo into a page that another thread
// flips read-only at a random moment during the call.
type raceCase struct {
	Iterations int `json:"iterations"`
	Written    int `json:"written"` // returned 0, buffer written
	Faulted    int `json:"faulted"` // EFAULT, buffer untouched
	// Late: the buffer changed after mprotect(PROT_READ) had returned on
	// the other thread, which the kernel never does.
	Late int `json:"late"`
	// Torn: EFAULT with part of the buffer written, the page flipped
	// during the copy (copy_to_user stores a few bytes at a time).
	Torn int `json:"torn"`
	// Inconsistent: 0 with nothing written, or another errno.
	Inconsistent int `json:"inconsistent"`
}

type writesPhase struct {
	Cases map[string]writeCase `json:"cases"`
	Race  raceCase             `json:"race"`
	// Maps is how many mappings the process had during the "maps60k" case.
	Maps int `json:"maps"`
}

type writesReport struct {
	Native writesPhase `json:"native"`
	Agent  writesPhase `json:"agent"`
}

func rawSyscall(nr, a0, a1, a2 uintptr) (int64, int) {
	r, _, e := unix.Syscall(nr, a0, a1, a2)
	if e != 0 {
		return -1, int(e)
	}
	return int64(r), 0
}

// stackStart returns the start of the main thread's stack VMA and of the
// mapping below it.
func stackStart() (start, prevEnd uintptr, err error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var last uintptr
	for sc.Scan() {
		line := sc.Text()
		lo, hi, _ := strings.Cut(strings.Fields(line)[0], "-")
		l, _ := strconv.ParseUint(lo, 16, 64)
		h, _ := strconv.ParseUint(hi, 16, 64)
		if strings.HasSuffix(line, "[stack]") {
			return uintptr(l), last, nil
		}
		last = uintptr(h)
	}
	return 0, 0, fmt.Errorf("no [stack] in /proc/self/maps")
}

func countMaps() int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte{'\n'})
}

// destination prepares one case for a run: it returns the address to pass,
// the readable bytes of the destination (to fill with the canary and read
// back) and a cleanup; unavailable names a missing kernel feature.
type destination func() (addr uintptr, view []byte, cleanup func(), unavailable string, err error)

// errSecretmem is how memfd_secret's absence shows.
const errSecretmem = "memfd_secret(2) is ENOSYS: CONFIG_SECRETMEM off, or secretmem.enable=0 (the default before Linux 6.5)"

// writesPhaseRun makes every case's call in this thread (filtered or not).
func writesPhaseRun(page int, aff int) (writesPhase, error) {
	ph := writesPhase{Cases: map[string]writeCase{}}
	anon := func(n int) ([]byte, error) {
		return unix.Mmap(-1, 0, n*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	}
	// straddle: head bytes writable, the rest on a PROT_NONE page.
	straddle := func(head int) destination {
		return func() (uintptr, []byte, func(), string, error) {
			m, err := anon(2)
			if err != nil {
				return 0, nil, nil, "", err
			}
			if err := unix.Mprotect(m[page:], unix.PROT_NONE); err != nil {
				return 0, nil, nil, "", err
			}
			return uintptr(unsafe.Pointer(&m[page-head])), m[page-head : page], func() { unix.Munmap(m) }, "", nil
		}
	}
	cases := []struct {
		name string
		nr   uintptr
		a0   uintptr // sched_getaffinity: pid
		a1   uintptr // sched_getaffinity: length
		dest destination
	}{
		{"sysinfo_straddle", unix.SYS_SYSINFO, 0, 0, straddle(40)},
		{"sysinfo_readonly", unix.SYS_SYSINFO, 0, 0, func() (uintptr, []byte, func(), string, error) {
			m, err := anon(1)
			if err != nil {
				return 0, nil, nil, "", err
			}
			// Fill happens through the view before the flip: see run.
			return uintptr(unsafe.Pointer(&m[0])), m[:sysinfo.NativeSize], func() { unix.Munmap(m) }, "", nil
		}},
		{"sysinfo_unmapped", unix.SYS_SYSINFO, 0, 0, func() (uintptr, []byte, func(), string, error) {
			m, err := anon(1)
			if err != nil {
				return 0, nil, nil, "", err
			}
			unix.Munmap(m)
			return uintptr(unsafe.Pointer(&m[0])), nil, func() {}, "", nil
		}},
		{"aff_straddle", unix.SYS_SCHED_GETAFFINITY, 0, 128, straddle(aff / 2)},
		{"sysinfo_below_stack", unix.SYS_SYSINFO, 0, 0, func() (uintptr, []byte, func(), string, error) {
			// One page below the stack VMA: the fault handler grows the
			// stack (expand_stack) when the gap to the mapping below is
			// wide enough.
			start, prev, err := stackStart()
			if err != nil {
				return 0, nil, nil, "", err
			}
			if start-prev < 4<<20 {
				return 0, nil, nil, "", fmt.Errorf("mapping below the stack at %#x, stack at %#x: no room to grow", prev, start)
			}
			addr := start - uintptr(page)
			return addr, nil, func() {}, "", nil
		}},
		// An x32 sysinfo (nr 99 | __X32_SYSCALL_BIT): ENOSYS where the
		// kernel has no x32 ABI, the native layout where it has.
		{"sysinfo_x32", 99 | 0x40000000, 0, 0, func() (uintptr, []byte, func(), string, error) {
			m, err := anon(1)
			if err != nil {
				return 0, nil, nil, "", err
			}
			return uintptr(unsafe.Pointer(&m[0])), m[:sysinfo.NativeSize], func() { unix.Munmap(m) }, "", nil
		}},
		{"sysinfo_memfd_secret", unix.SYS_SYSINFO, 0, 0, func() (uintptr, []byte, func(), string, error) {
			fd, _, e := unix.Syscall(unix.SYS_MEMFD_SECRET, unix.O_CLOEXEC, 0, 0)
			if e == unix.ENOSYS {
				return 0, nil, nil, "SECRETMEM", nil
			}
			if e != 0 {
				return 0, nil, nil, "", fmt.Errorf("memfd_secret: %w", e)
			}
			defer unix.Close(int(fd))
			if err := unix.Ftruncate(int(fd), int64(page)); err != nil {
				return 0, nil, nil, "", err
			}
			m, err := unix.Mmap(int(fd), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				return 0, nil, nil, "", fmt.Errorf("mmap memfd_secret: %w", err)
			}
			return uintptr(unsafe.Pointer(&m[0])), m[:sysinfo.NativeSize], func() { unix.Munmap(m) }, "", nil
		}},
	}
	for _, c := range cases {
		var wc writeCase
		for i, canary := range []byte{0xAA, 0x55} {
			addr, view, cleanup, unavailable, err := c.dest()
			if err != nil {
				return ph, fmt.Errorf("%s: %w", c.name, err)
			}
			if unavailable != "" {
				wc.Unavailable, wc.Why = unavailable, errSecretmem
				break
			}
			for j := range view {
				view[j] = canary
			}
			if c.name == "sysinfo_readonly" {
				if err := unix.Mprotect(view[:1:1], unix.PROT_READ); err != nil {
					cleanup()
					return ph, err
				}
			}
			var ret int64
			var errno int
			if c.nr == unix.SYS_SCHED_GETAFFINITY {
				ret, errno = rawSyscall(c.nr, c.a0, c.a1, addr)
			} else {
				ret, errno = rawSyscall(c.nr, addr, 0, 0)
			}
			if c.name == "sysinfo_below_stack" && errno == 0 {
				// Now part of the stack: read it back.
				view = make([]byte, sysinfo.NativeSize)
				if err := readSelf(addr, view); err != nil {
					return ph, fmt.Errorf("%s: %w", c.name, err)
				}
			}
			if i == 0 {
				wc.Ret, wc.Errno = ret, errno
				wc.Mask = make([]bool, len(view))
				wc.Buf = append([]byte(nil), view...)
			} else if ret != wc.Ret || errno != wc.Errno || len(view) != len(wc.Mask) {
				cleanup()
				return ph, fmt.Errorf("%s: the two runs differ: %d/%d then %d/%d", c.name, wc.Ret, wc.Errno, ret, errno)
			}
			for j, b := range view {
				if b != canary {
					wc.Mask[j] = true
				}
			}
			cleanup()
		}
		ph.Cases[c.name] = wc
	}

	// 60,000 mappings (alternating protections keep them from merging):
	// the agent's work per call must not depend on them.
	const nMaps = 60000
	big, err := anon(nMaps)
	if err != nil {
		return ph, fmt.Errorf("maps60k: %w", err)
	}
	for i := 0; i < nMaps; i += 2 {
		if err := unix.Mprotect(big[i*page:(i+1)*page], unix.PROT_READ); err != nil {
			unix.Munmap(big)
			return ph, fmt.Errorf("maps60k: mprotect page %d (vm.max_map_count?): %w", i, err)
		}
	}
	ph.Maps = countMaps()
	var si [sysinfo.NativeSize]byte
	for i := range si {
		si[i] = 0xAA
	}
	ret, errno := rawSyscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&si[0])), 0, 0)
	ph.Cases["sysinfo_maps60k"] = writeCase{Ret: ret, Errno: errno, Buf: si[:]}
	unix.Munmap(big)

	race, err := raceRun(page)
	ph.Race = race
	return ph, err
}

// raceRun calls sysinfo into a fresh page while another thread flips it
// read-only after a random delay, spread over the duration of one call.
func raceRun(page int) (raceCase, error) {
	const iterations = 1000
	m, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return raceCase{}, err
	}
	defer unix.Munmap(m)
	buf := m[:sysinfo.NativeSize]
	call := func() (int64, int) { return rawSyscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&m[0])), 0, 0) }
	// The spread: twice the mean duration of one call in this phase.
	start := time.Now()
	for i := 0; i < 50; i++ {
		call()
	}
	spread := 2 * time.Since(start) / 50

	flip := make(chan time.Duration)
	flipped := make(chan []byte)
	go func() {
		for d := range flip {
			until := time.Now().Add(d)
			for time.Now().Before(until) {
			}
			err := unix.Mprotect(m, unix.PROT_READ)
			if err != nil {
				flipped <- nil
				continue
			}
			flipped <- append([]byte(nil), buf...)
		}
	}()
	defer close(flip)
	rc := raceCase{Iterations: iterations}
	for i := 0; i < iterations; i++ {
		if err := unix.Mprotect(m, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return rc, err
		}
		for j := range buf {
			buf[j] = 0xAA
		}
		flip <- time.Duration(rand.Int64N(int64(spread) + 1))
		ret, errno := call()
		snap := <-flipped
		if snap == nil {
			return rc, fmt.Errorf("mprotect failed")
		}
		written := bytes.Count(buf, []byte{0xAA}) != len(buf)
		switch {
		case !bytes.Equal(buf, snap):
			rc.Late++
		case ret == 0 && errno == 0 && written:
			rc.Written++
		case errno == int(unix.EFAULT) && !written:
			rc.Faulted++
		case errno == int(unix.EFAULT):
			rc.Torn++
		default:
			rc.Inconsistent++
		}
	}
	return rc, nil
}

// writesChild measures every case natively, installs the filter and
// measures them again, then prints a writesReport.
func writesChild() int {
	page := os.Getpagesize()
	aff, _ := strconv.Atoi(os.Getenv("SECCOMPAGENT_NOTIFY_TEST_MASK"))
	var rep writesReport
	var err error
	start := time.Now()
	if rep.Native, err = writesPhaseRun(page, aff); err != nil {
		fmt.Fprintln(os.Stderr, "native:", err)
		return 30
	}
	native := time.Since(start)
	if rc := installFilter(); rc != 0 {
		return rc
	}
	start = time.Now()
	if rep.Agent, err = writesPhaseRun(page, aff); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 31
	}
	fmt.Fprintf(os.Stderr, "writes child: native phase %v, agent phase %v\n", native, time.Since(start))
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 32
	}
	return 0
}

// TestKernelWrites compares the agent's answers with the kernel's where the
// destination is not plainly writable: the outcome (return value, errno and
// which bytes were written) must be the kernel's in every case.
func TestKernelWrites(t *testing.T) {
	k, err := affinity.ProbeKernel("/")
	if err != nil {
		t.Fatal(err)
	}
	lim := fakeLimits{start: boottime(t) - 5*time.Second}
	fdsBefore, goroutinesBefore := openFds(t), runtime.NumGoroutine()
	t.Setenv("SECCOMPAGENT_NOTIFY_TEST_MASK", strconv.Itoa(k.MaskSize))
	c := startChild(t, "writes")
	done := runLoop(c, newRegistry(t, lim, k, nil), true)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	waitLoop(t, done)
	unix.Close(c.fd)
	var rep writesReport
	if err := json.Unmarshal([]byte(c.stdout.String()), &rep); err != nil {
		t.Fatalf("child output %q: %v", c.stdout.String(), err)
	}

	for _, name := range []string{"sysinfo_straddle", "sysinfo_readonly", "sysinfo_unmapped", "aff_straddle",
		"sysinfo_below_stack", "sysinfo_memfd_secret", "sysinfo_x32", "sysinfo_maps60k"} {
		t.Run(name, func(t *testing.T) {
			n, a := rep.Native.Cases[name], rep.Agent.Cases[name]
			if n.Unavailable != "" {
				testenv.SkipWithoutKernelFeature(t, false, n.Unavailable, n.Why)
			}
			t.Logf("kernel: ret %d errno %d, %d of %d bytes written; agent: ret %d errno %d, %d of %d bytes written",
				n.Ret, n.Errno, countTrue(n.Mask), len(n.Mask), a.Ret, a.Errno, countTrue(a.Mask), len(a.Mask))
			if a.Ret != n.Ret || a.Errno != n.Errno {
				t.Errorf("agent: ret %d errno %d; kernel: ret %d errno %d", a.Ret, a.Errno, n.Ret, n.Errno)
			}
			if maskString(a.Mask) != maskString(n.Mask) {
				t.Errorf("written bytes differ (w = written):\nagent  %s\nkernel %s", maskString(a.Mask), maskString(n.Mask))
			}
		})
	}
	t.Run("x32_agent_answer", func(t *testing.T) {
		r := rep.Agent.Cases["sysinfo_x32"]
		t.Logf("kernel runs x32: %v", notify.KernelRunsX32())
		if notify.KernelRunsX32() {
			if tot := le64(r.Buf, 32); r.Ret != 0 || tot != 256<<20 {
				t.Errorf("x32 sysinfo: ret %d totalram %d, want the agent's answer (%d)", r.Ret, tot, 256<<20)
			}
		} else if r.Errno != int(unix.ENOSYS) {
			t.Errorf("x32 sysinfo on a kernel without x32: ret %d errno %d, want ENOSYS", r.Ret, r.Errno)
		}
	})
	t.Run("maps60k_agent_answer", func(t *testing.T) {
		t.Logf("%d mappings in the caller", rep.Agent.Maps)
		if rep.Agent.Maps < 60000 {
			t.Fatalf("the caller had %d mappings, want >= 60000", rep.Agent.Maps)
		}
		// The container's view, not the host's: the agent answered.
		if tot := le64(rep.Agent.Cases["sysinfo_maps60k"].Buf, 32); tot != 256<<20 {
			t.Errorf("totalram %d, want %d (the agent's answer)", tot, 256<<20)
		}
	})
	t.Run("readonly_race", func(t *testing.T) {
		n, a := rep.Native.Race, rep.Agent.Race
		t.Logf("kernel: %+v; agent: %+v", n, a)
		if n.Late != 0 || n.Inconsistent != 0 {
			t.Fatalf("the detector is wrong: the kernel itself shows %d late writes, %d inconsistent results", n.Late, n.Inconsistent)
		}
		// process_vm_writev checks the VMA when it pins the page, then
		// drops mmap_lock and copies: an mprotect that completes in that
		// gap (a few hundred ns) does not stop the copy, where
		// copy_to_user would fault. Measured: 0 in 15,000 iterations on
		// the host, 1 in 2,000 under TCG in the VM. A write path that
		// ignored the flip (FOLL_FORCE unchecked) would land late in most
		// of the iterations that fault above: that is what this bounds.
		if a.Late > a.Iterations/100 {
			t.Errorf("%d of %d agent writes landed after the page was read-only", a.Late, a.Iterations)
		} else if a.Late > 0 {
			t.Logf("%d of %d agent writes landed after mprotect(PROT_READ) had returned: the pin-then-copy gap of process_vm_writev", a.Late, a.Iterations)
		}
		if a.Inconsistent != 0 {
			t.Errorf("%d of %d agent answers are no outcome the kernel can give", a.Inconsistent, a.Iterations)
		}
	})
	checkLeaks(t, fdsBefore, goroutinesBefore)
}

func maskString(m []bool) string {
	b := make([]byte, len(m))
	for i, w := range m {
		b[i] = '.'
		if w {
			b[i] = 'w'
		}
	}
	return "[" + string(b) + "]"
}

func countTrue(m []bool) (n int) {
	for _, b := range m {
		if b {
			n++
		}
	}
	return n
}

func le64(b []byte, off int) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[off+i])
	}
	return v
}

// readSelf reads this process's memory at addr (an address the Go code holds
// no slice for).
func readSelf(addr uintptr, p []byte) error {
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, int64(addr))
	return err
}

// Command gomaxprocs prints what the Go runtime decided about the CPUs it
// may use, one key=value line each. test/e2e builds it twice, from modules
// whose go.mod says go 1.24 and go 1.26: the go line selects the GODEBUG
// defaults, and only from go 1.25 on does the runtime lower GOMAXPROCS to
// the cgroup's CPU quota by itself (containermaxprocs=1), reading the
// cgroup files, and re-check it about once a second (updatemaxprocs=1).
package main

import (
	"fmt"
	"runtime"
)

func main() {
	fmt.Printf("go_version=%s\n", runtime.Version())
	// NumCPU is the count of the sched_getaffinity(2) mask at startup.
	fmt.Printf("numcpu=%d\n", runtime.NumCPU())
	// GOMAXPROCS(0) reads the current value without changing it.
	fmt.Printf("gomaxprocs=%d\n", runtime.GOMAXPROCS(0))
}

package agent

import (
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// attachSlots bounds how many runtime connections are decoded and attached
// at once. A storm of container starts (hundreds at once) would otherwise
// fill the Go run queue with attach work, and an attached container's
// receiver, back from RECV, would wait behind all of it for a P: its calls
// stall for as long as the storm lasts. With at most half the Ps attaching,
// receivers always find one.
func attachSlots() chan struct{} {
	return make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
}

// awaitData waits (in the netpoller, holding no P and no attach slot) until
// conn has data or its peer hung up: crun connects before it sets up the
// container's cgroups and may take a while to send.
func awaitData(conn *net.UnixConn) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN
	})
}

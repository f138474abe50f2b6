package notify

// SetDupFd replaces how the Poller duplicates a listener fd, for tests of
// a process out of fds; it returns the restore function.
func SetDupFd(f func(int) (int, error)) (restore func()) {
	old := dupFd
	dupFd = f
	return func() { dupFd = old }
}

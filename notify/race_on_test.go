//go:build race

package notify_test

// raceDetector: the race detector's instrumentation allocates where the
// plain build does not.
const raceDetector = true

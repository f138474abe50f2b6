//go:build !race

package notify_test

const raceDetector = false

// Package metrics turns what the agent does into Prometheus metrics and
// serves them, with a health check, over HTTP (`serve --metrics ADDR`; off
// by default). It owns the metric names and labels; the agent reports to
// it through nil-safe methods, so an agent without --metrics pays nothing
// but a nil check.
//
// It never decides anything: no metric feeds back into an answer.
package metrics

package sysinfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseBoottimeOffset(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"none", "monotonic           0         0\nboottime            0         0\n", 0, false},
		{"unshare --boottime 100000", "monotonic           0         0\nboottime       100000         0\n", 100000 * time.Second, false},
		{"negative with nanoseconds", "monotonic 0 0\nboottime -20 500000000\n", -20*time.Second + 500*time.Millisecond, false},
		{"numeric clock id 7", "1 0 0\n7 3 1\n", 3*time.Second + 1, false},
		{"no boottime line", "monotonic 0 0\n", 0, true},
		{"bad seconds", "boottime x 0\n", 0, true},
		{"nanoseconds out of range", "boottime 1 1000000000\n", 0, true},
		{"beyond a Duration", "boottime 9223372036 0\n", 0, true},
	}
	for _, tc := range cases {
		got, err := ParseBoottimeOffset(strings.NewReader(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// fakeTask is one /proc/<pid> of a fixture: its own time namespace, the
// one for its children, and the offsets file (of time_for_children).
type fakeTask struct {
	name        string // "self" or a pid
	ns, forKids string
	offsets     string // "" = file absent
}

func writeTimeProc(t *testing.T, tasks []fakeTask) string {
	t.Helper()
	root := t.TempDir()
	for _, k := range tasks {
		dir := filepath.Join(root, k.name)
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if k.ns == "" {
			continue // a kernel without time namespaces
		}
		if err := os.Symlink(k.ns, filepath.Join(dir, "ns", "time")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(k.forKids, filepath.Join(dir, "ns", "time_for_children")); err != nil {
			t.Fatal(err)
		}
		if k.offsets != "" {
			if err := os.WriteFile(filepath.Join(dir, "timens_offsets"), []byte(k.offsets), 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func offsets(boot string) string { return "monotonic 0 0\nboottime " + boot + "\n" }

func TestBoottimeDelta(t *testing.T) {
	const (
		host = "time:[4026531834]"
		b    = "time:[4026532001]" // boottime +1000 s + 5 ns
		c    = "time:[4026532002]" // boottime +300 s
		d    = "time:[4026532003]"
	)
	tasks := []fakeTask{
		{"self", host, host, offsets("0 0")},
		{"10", host, host, offsets("0 0")},            // the container's init, host namespace
		{"11", b, b, offsets("1000 5")},               // a child of `unshare --time --boottime 1000`
		{"12", host, b, offsets("1000 5")},            // the unsharing process itself: still the host's clock
		{"13", b, d, offsets("7 0")},                  // unshared again: its own offset is not shown anywhere
		{"20", c, c, offsets("300 0")},                // a restored init (CRIU)
		{"21", c, c, offsets("300 0")},                // and its child
		{"22", b, b, offsets("1000 5")},               // a task of the restored container in another namespace
		{"30", host, b, offsets("1000 5")},            // an init that unshared (not yet exec'd)
		{"40", c, c, ""},                              // offsets unreadable
		{"41", b, b, "monotonic 0 0\nboottime x 0\n"}, // garbage
	}
	proc := writeTimeProc(t, tasks)
	cases := []struct {
		name      string
		tid, init int
		want      time.Duration
		wantErr   error
	}{
		{"caller and init in the host's namespace", 10, 10, 0, nil},
		{"caller in a namespace with an offset", 11, 10, 1000*time.Second + 5, nil},
		{"the unsharing process sees the host's clock", 12, 10, 0, nil},
		{"own namespace hidden behind another time_for_children", 13, 10, 0, ErrUnknownTimeOffset},
		{"restored container: caller and init in one namespace", 21, 20, 0, nil},
		{"restored container: a caller in the host's namespace", 10, 20, -300 * time.Second, nil},
		{"restored container: a caller in another namespace", 22, 20, 700*time.Second + 5, nil},
		{"init that unshared: its own clock is the host's", 11, 30, 1000*time.Second + 5, nil},
		{"offsets file missing", 40, 10, 0, os.ErrNotExist},
	}
	for _, tc := range cases {
		var n timeNS
		got, err := n.boottimeDelta(proc, tc.tid, tc.init)
		if got != tc.want || (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("%s: boottimeDelta(%d, %d) = %v, %v; want %v, %v", tc.name, tc.tid, tc.init, got, err, tc.want, tc.wantErr)
		}
	}
	var n timeNS
	if _, err := n.boottimeDelta(proc, 41, 10); err == nil {
		t.Error("garbage offsets: no error")
	}
}

func TestBoottimeDeltaWithoutTimeNamespaces(t *testing.T) {
	proc := writeTimeProc(t, []fakeTask{{name: "self"}, {name: "10"}, {name: "11"}})
	var n timeNS
	if got, err := n.boottimeDelta(proc, 11, 10); got != 0 || err != nil {
		t.Errorf("kernel without time namespaces: %v, %v; want 0", got, err)
	}
}

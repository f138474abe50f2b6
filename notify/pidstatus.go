package notify

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// pidStatus is what pid translation needs from /proc/<tid>/status. The
// NS* lists go from the pid namespace of the procfs mount that was read
// (the agent's) down to the task's own; index i is the number at level i
// below the agent's namespace.
type pidStatus struct {
	Tgid    int
	PPid    int // the parent's tgid in the agent's namespace, 0 if it has none there
	Threads int
	NStgid  []int
	NSpid   []int
}

// parsePidStatus reads the Tgid, PPid, Threads, NStgid and NSpid lines of a
// /proc/<tid>/status text. NStgid and NSpid exist since Linux 4.1; a text
// without them (or with lists of different lengths) is an error, never a
// guess.
func parsePidStatus(b []byte) (pidStatus, error) {
	var s pidStatus
	var seen int
	const (
		sTgid = 1 << iota
		sPPid
		sThreads
		sNStgid
		sNSpid
		sAll = sTgid | sPPid | sThreads | sNStgid | sNSpid
	)
	for len(b) > 0 && seen != sAll {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var err error
		switch string(key) {
		case "Tgid":
			s.Tgid, err = atoiField(val)
			seen |= sTgid
		case "PPid":
			s.PPid, err = atoiField(val)
			seen |= sPPid
		case "Threads":
			s.Threads, err = atoiField(val)
			seen |= sThreads
		case "NStgid":
			s.NStgid, err = intList(val)
			seen |= sNStgid
		case "NSpid":
			s.NSpid, err = intList(val)
			seen |= sNSpid
		}
		if err != nil {
			return pidStatus{}, fmt.Errorf("status line %q: %w", line, err)
		}
	}
	switch {
	case seen&sNSpid == 0 || seen&sNStgid == 0:
		return pidStatus{}, errors.New("status has no NSpid/NStgid lines (Linux < 4.1)")
	case seen&sTgid == 0 || seen&sPPid == 0 || seen&sThreads == 0:
		return pidStatus{}, errors.New("status lacks Tgid, PPid or Threads")
	case len(s.NSpid) == 0 || len(s.NSpid) != len(s.NStgid):
		return pidStatus{}, fmt.Errorf("status NSpid %v and NStgid %v differ in depth", s.NSpid, s.NStgid)
	}
	return s, nil
}

func atoiField(b []byte) (int, error) {
	return strconv.Atoi(string(bytes.TrimSpace(b)))
}

// intList parses the tab-separated numbers of an NSpid/NStgid line.
func intList(b []byte) ([]int, error) {
	f := bytes.Fields(b)
	out := make([]int, 0, len(f))
	for _, x := range f {
		n, err := strconv.Atoi(string(x))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad pid %q", x)
		}
		out = append(out, n)
	}
	return out, nil
}

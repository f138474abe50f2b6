package limits

import "fmt"

// ParseError says which cgroup file could not be read or understood.
type ParseError struct {
	Path string // the cgroup, as the host names it ("" for /proc files)
	File string // the file read
	Err  error
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("cgroup %s: %s: %v", e.Path, e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// NoControllerError says no mounted hierarchy carries a controller, so the
// host's answer is the only one there is.
type NoControllerError struct {
	Controller string
}

func (e *NoControllerError) Error() string {
	return fmt.Sprintf("no cgroup hierarchy with the %s controller is mounted", e.Controller)
}

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

// UnreachableError says a process's cgroup cannot be reached through the
// mount the reader found: /proc/<pid>/cgroup paths and mount roots are both
// relative to the reader's cgroup namespace, and a path outside the mount's
// root ("/../../x" for a cgroup beyond the namespace's root) has no
// directory under this mount point.
type UnreachableError struct {
	Cgroup     string // as /proc/<pid>/cgroup shows it
	MountRoot  string // mountinfo field 4
	MountPoint string // mountinfo field 5
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cgroup %s is outside the part of the hierarchy mounted at %s (mount root %s): "+
		"run the agent in the host's cgroup namespace", e.Cgroup, e.MountPoint, e.MountRoot)
}

// Package limits resolves a host pid to its cgroups (v1, v2 or hybrid, through
// the mount table, so cgroup namespaces work) and reads what those cgroups
// allow: the effective limit is the minimum over every ancestor, and every
// number records which file at which level decided it.
//
// Its /proc and filesystem roots are parameters so tests run on fixture trees.
// It must never turn an unreadable or malformed file into 0 or "unlimited":
// limits are tri-state (value, limited, error) and errors name the file.
package limits

package ocihook

import (
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// The agent's view socket (`seccompagent serve --view-socket`) lives alone in
// a directory next to the listener socket, and that directory is bind-mounted
// read-only into every enabled container at ContainerViewDir. The directory,
// not the socket file: a restarted agent unlinks and re-creates the socket,
// and a file bind mount would keep showing the old, dead inode, while a
// directory bind mount shows whatever the directory holds now.
const (
	// ContainerViewDir is where containers find the view socket's directory.
	ContainerViewDir = "/run/seccompagent"
	// ViewSocketName is the socket's name in that directory.
	ViewSocketName = "view.sock"
)

// ViewDirFor is the view socket's directory for an agent listening on
// socket: /run/seccompagent/view for /run/seccompagent/seccompagent.sock.
func ViewDirFor(socket string) string {
	return filepath.Join(filepath.Dir(socket), "view")
}

// ViewSocketFor is the view socket for an agent listening on socket.
func ViewSocketFor(socket string) string {
	return filepath.Join(ViewDirFor(socket), ViewSocketName)
}

// viewMount is the read-only bind mount of the host's view directory.
// nosuid, nodev and noexec: the directory only ever holds a socket.
func viewMount(hostDir string) specs.Mount {
	return specs.Mount{
		Destination: ContainerViewDir,
		Type:        "bind",
		Source:      hostDir,
		Options:     []string{"bind", "ro", "nosuid", "nodev", "noexec"},
	}
}

// addViewMount appends the view directory's mount to a config's raw mounts
// unless something is mounted at ContainerViewDir already (a second run, or
// the container's own choice, which wins). It reports whether it added one.
func addViewMount(raw json.RawMessage, hostDir string) (json.RawMessage, bool, error) {
	var mounts []json.RawMessage
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &mounts); err != nil {
			return nil, false, fmt.Errorf("mounts: %w", err)
		}
	}
	for i, m := range mounts {
		var dst struct {
			Destination string `json:"destination"`
		}
		if err := json.Unmarshal(m, &dst); err != nil {
			return nil, false, fmt.Errorf("mounts[%d]: %w", i, err)
		}
		if dst.Destination != "" && path.Clean(dst.Destination) == ContainerViewDir {
			return raw, false, nil
		}
	}
	mounts = append(mounts, mustEncode(viewMount(hostDir)))
	out, err := encode(mounts)
	return out, true, err
}

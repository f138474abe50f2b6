package agent

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// systemd's file-descriptor store (sd_notify(3) FDSTORE=1, FDNAME=,
// FDSTOREREMOVE=1; FileDescriptorStoreMax= in the unit) keeps fds across
// service restarts, and passes them back to the next start as
// LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds(3)), from fd 3 on. Under systemd
// it replaces the holder process: systemd is the holder.
//
// Names: "socket" (the runtime socket), "journal", and per listener
// "lsn-<key>" with its metadata in a memfd named "meta-<key>". systemd
// closes a stored fd by itself once it reports EPOLLHUP (a listener whose
// container is gone).
type sdStore struct {
	socket string // $NOTIFY_SOCKET
	mu     sync.Mutex
	log    *logrus.Entry
}

// newSDStore reads $NOTIFY_SOCKET; nil without it.
func newSDStore(log *logrus.Entry) *sdStore {
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return nil
	}
	return &sdStore{socket: p, log: log}
}

// notify sends one sd_notify datagram with at most one fd.
func (d *sdStore) notify(state string, fd int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := d.socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // abstract namespace
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: name}, 0)
}

func (d *sdStore) store(name string, fd int) {
	if err := d.notify("FDSTORE=1\nFDNAME="+name, fd); err != nil {
		d.log.WithError(err).WithField("fdname", name).Warn("systemd fd store refused an fd: a restart will cost that container ENOSYS")
	}
}

func (d *sdStore) remove(name string) {
	_ = d.notify("FDSTOREREMOVE=1\nFDNAME="+name, -1)
}

// apply turns a holder frame into fd-store operations.
func (d *sdStore) apply(f frame, fd int) {
	switch f.Op {
	case "put":
		switch f.Kind {
		case kindSocket, kindJournal:
			d.remove(f.Kind)
			d.store(f.Kind, fd)
		case kindListener:
			k := strconv.FormatUint(f.Key, 16)
			d.remove("lsn-" + k)
			d.remove("meta-" + k)
			d.store("lsn-"+k, fd)
			m, err := metaMemfd(f.Meta)
			if err != nil {
				d.log.WithError(err).Warn("cannot store a listener's metadata in systemd's fd store")
				return
			}
			d.store("meta-"+k, m)
			unix.Close(m)
		}
	case "drop":
		k := strconv.FormatUint(f.Key, 16)
		d.remove("lsn-" + k)
		d.remove("meta-" + k)
	}
}

func metaMemfd(meta []byte) (int, error) {
	fd, err := unix.MemfdCreate("seccompagent-meta", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, err
	}
	for b := meta; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		b = b[n:]
	}
	return fd, nil
}

// sdEntries takes the fds systemd passed (sd_listen_fds(3)) and turns them
// into holder entries; fds it does not know are closed. The LISTEN_*
// variables are removed so no child inherits them.
func sdEntries(d *sdStore, log *logrus.Entry) []entry {
	defer func() {
		for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(v)
		}
	}()
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	const first = 3 // SD_LISTEN_FDS_START
	metas := map[string][]byte{}
	var entries []entry
	for i := 0; i < n; i++ {
		fd := first + i
		unix.CloseOnExec(fd)
		name := ""
		if i < len(names) {
			name = names[i]
		}
		switch {
		case name == kindSocket:
			entries = append(entries, entry{kind: kindSocket, key: 2, fd: fd})
		case name == kindJournal:
			entries = append(entries, entry{kind: kindJournal, key: 1, fd: fd})
		case strings.HasPrefix(name, "lsn-"):
			key, err := strconv.ParseUint(name[4:], 16, 64)
			if err != nil {
				unix.Close(fd)
				continue
			}
			entries = append(entries, entry{kind: kindListener, key: key, fd: fd})
		case strings.HasPrefix(name, "meta-"):
			var buf bytes.Buffer
			b := make([]byte, 64<<10)
			for off := int64(0); buf.Len() <= maxFrame; {
				r, err := unix.Pread(fd, b, off)
				if r <= 0 || err != nil {
					break
				}
				buf.Write(b[:r])
				off += int64(r)
			}
			metas[name[5:]] = buf.Bytes()
			unix.Close(fd)
		default:
			log.WithField("fdname", name).Warn("closing an fd systemd passed that this agent does not know")
			unix.Close(fd)
		}
	}
	for i := range entries {
		if entries[i].kind == kindListener {
			k := strconv.FormatUint(entries[i].key, 16)
			entries[i].meta = metas[k]
			delete(metas, k)
		}
	}
	for k := range metas {
		d.remove("meta-" + k) // its container ended while no agent ran
	}
	log.WithField("fds", n).Info(fmt.Sprintf("received %d fds from systemd's fd store", n))
	return entries
}

package ocihook

import (
	"os"
	"path/filepath"
	"syscall"
)

// WriteConfig replaces the file at path (through symlinks) with data: a
// temporary file in the same directory with the same mode (and owner, when
// allowed), synced and renamed over it, so a runtime never reads half a
// config.json.
func WriteConfig(path string, data []byte) (err error) {
	if path, err = filepath.EvalSymlinks(path); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".seccompagent-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		_ = f.Chown(int(sys.Uid), int(sys.Gid)) // best effort: only root may
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

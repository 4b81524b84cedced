package fs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// clearStale unmounts what a crashed daemon left on dir: a FUSE mount whose server is
// gone answers every access with ENOTCONN ("Transport endpoint is not connected").
func clearStale(dir string, log *slog.Logger) error {
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if err == nil && st.Type == unix.FUSE_SUPER_MAGIC {
		var here, parent unix.Stat_t
		if unix.Stat(dir, &here) == nil && unix.Stat(filepath.Dir(dir), &parent) == nil && here.Dev != parent.Dev {
			return fmt.Errorf("%s is already a mounted FUSE filesystem (another dutchman daemon?); unmount it or choose another --mount", dir)
		}
	}
	if !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) {
		return nil
	}
	log.Warn("clearing a stale mount a crashed daemon left", "mount", dir)
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("clear the stale mount on %s: %w", dir, err)
	}
	return nil
}

// detach unmounts dir lazily: it leaves the namespace now, and goes when unused.
func detach(dir string) error {
	return unix.Unmount(dir, unix.MNT_DETACH)
}

// closeFuseOnExec sets FD_CLOEXEC on this process's descriptors of /dev/fuse.
func closeFuseOnExec() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			unix.CloseOnExec(fd)
		}
	}
}

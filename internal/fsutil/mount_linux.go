package fsutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountsUnder returns the mount points at or below dir, deepest first.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// mountinfo names mount points by their real paths.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Openat2 is openat2(2), tried again when a concurrent rename made it give up (EAGAIN,
// which RESOLVE_IN_ROOT and RESOLVE_BENEATH answer then).
func Openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, path, how)
		if err != unix.EAGAIN || i == 16 {
			return fd, err
		}
	}
}

// UnmountAll unmounts every mount at or below dir, detaching those in use, and fails if
// one stays: what removes dir next must not reach into a mounted filesystem.
func UnmountAll(dir string) error {
	for range 8 {
		mps, err := MountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.UMOUNT_NOFOLLOW); err != nil {
				unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
		}
	}
	return fmt.Errorf("%s: still mounted", dir)
}

// DetachFUSE lazily unmounts every FUSE mount of this mount namespace. A process that
// runs in a mount namespace of its own, copied from the daemon's, calls it first: its
// copy of the daemon's tree would otherwise keep the tree's FUSE connection alive after
// the daemon unmounts it, and the daemon's unmount would wait on it.
func DetachFUSE() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		// ... mount-point options [optional fields] - fstype source super-options
		pre, post, ok := strings.Cut(line, " - ")
		fields, fstype := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fstype) == 0 || !strings.HasPrefix(fstype[0], "fuse") {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("detach %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

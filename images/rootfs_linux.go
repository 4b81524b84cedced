package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// maxMountData is what mount(2) accepts as options: one page, less some room.
const maxMountData = 4000

// mountOverlay mounts an overlay of lowers (top first) with upper and work at target.
// readOnly mounts without upper and work. When the option string would exceed a page
// (images with very many layers), the lower directories are named by descriptors.
func mountOverlay(lowers []string, upper, work, target string, readOnly bool) error {
	data := overlayData(lowers, upper, work, readOnly)
	if len(data) > maxMountData {
		short := make([]string, len(lowers))
		for i, l := range lowers {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open lower layer %s: %w", l, err)
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		data = overlayData(short, upper, work, readOnly)
		if len(data) > maxMountData {
			return fmt.Errorf("mount overlay: %d layers is more than one mount can stack", len(lowers))
		}
	}
	flags := uintptr(0)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

func overlayData(lowers []string, upper, work string, readOnly bool) string {
	// index=off: lower layers are shared by many mounts; the inode index would tie them
	// to the first upper directory that used them.
	data := "lowerdir=" + strings.Join(lowers, ":")
	if !readOnly {
		data += ",upperdir=" + upper + ",workdir=" + work
	}
	return data + ",index=off"
}

func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		// Something still holds it open (a shell in the directory): detach it now; the
		// kernel frees it when the last user leaves.
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// isMountPoint tells whether path is the root of a mount.
func isMountPoint(path string) (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	var st, parent unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(path), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// probeOverlay mounts a small overlay, with a whiteout and an opaque directory, inside
// dir to learn whether overlayfs works there.
func probeOverlay(dir string) error {
	tmp, err := os.MkdirTemp(dir, "probe-")
	if err != nil {
		return err
	}
	defer fsutil.RemoveTree(tmp)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mknod(filepath.Join(tmp, "lower", "gone"), unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout: %w", err)
	}
	if err := unix.Setxattr(filepath.Join(tmp, "lower"), overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("opaque xattr: %w", err)
	}
	merged := filepath.Join(tmp, "merged")
	if err := mountOverlay([]string{filepath.Join(tmp, "lower")}, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), merged, false); err != nil {
		return err
	}
	return unmount(merged)
}

// copyLayers builds a root filesystem in dst by copying layer directories (top first,
// as overlayfs takes them) bottom up, applying whiteouts and opaque directories as
// overlayfs would. dst must be empty.
func copyLayers(ctx context.Context, lowers []string, dst string) error {
	var dirs []dirTimes
	buf := make([]byte, 256<<10)
	for i := len(lowers) - 1; i >= 0; i-- {
		src := lowers[i]
		links := map[uint64]string{} // inode -> first copied path, for hard links in a layer
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			target := filepath.Join(dst, rel)
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			mode := st.Mode & unix.S_IFMT
			if mode == unix.S_IFCHR && st.Rdev == 0 {
				// A whiteout: what lower layers had here is gone.
				return removeAll(target)
			}
			if mode == unix.S_IFDIR {
				if rel != "." {
					var have unix.Stat_t
					err := unix.Lstat(target, &have)
					if err == nil && have.Mode&unix.S_IFMT != unix.S_IFDIR {
						if err := os.Remove(target); err != nil {
							return err
						}
						err = unix.ENOENT
					}
					if errors.Is(err, unix.ENOENT) {
						if err := unix.Mkdir(target, 0o700); err != nil {
							return err
						}
					} else if err != nil {
						return err
					} else if opaque(p) {
						if err := emptyDir(target); err != nil {
							return err
						}
					}
				}
				if err := copyMeta(p, target, &st); err != nil {
					return err
				}
				dirs = append(dirs, dirTimes{rel: rel, times: []unix.Timespec{st.Atim, st.Mtim}})
				return nil
			}
			if err := removeAll(target); err != nil {
				return err
			}
			if st.Nlink > 1 && mode == unix.S_IFREG {
				if first, ok := links[st.Ino]; ok {
					return os.Link(first, target)
				}
				links[st.Ino] = target
			}
			switch mode {
			case unix.S_IFREG:
				if err := copyFile(p, target, buf); err != nil {
					return err
				}
			case unix.S_IFLNK:
				link, err := os.Readlink(p)
				if err != nil {
					return err
				}
				if err := os.Symlink(link, target); err != nil {
					return err
				}
			default:
				if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
					return err
				}
			}
			if err := copyMeta(p, target, &st); err != nil {
				return err
			}
			return unix.UtimesNanoAt(unix.AT_FDCWD, target, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			return fmt.Errorf("copy layer %s: %w", filepath.Base(src), err)
		}
	}
	// A higher layer may have replaced a directory by a symlink: set times only through
	// paths that still hold no symlink.
	root, err := os.OpenFile(dst, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	return setDirTimes(root, dirs)
}

func opaque(dir string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(dir, overlayOpaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

func removeAll(p string) error {
	err := os.RemoveAll(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, buf []byte) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(out, in, buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyMeta copies ownership, mode and extended attributes (except overlayfs's own).
func copyMeta(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		return nil
	}
	names := make([]byte, size)
	if size, err = unix.Llistxattr(src, names); err != nil {
		return nil
	}
	for _, name := range strings.Split(strings.TrimRight(string(names[:size]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		n, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(src, name, val); err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, val[:n], 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}

package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

const (
	overlayOpaqueXattr = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."
)

// unpacker writes one tar stream into a directory. Every entry is created relative to a
// handle of its parent directory, and parents are resolved with symlinks confined to the
// root (openat2 RESOLVE_IN_ROOT through filepath-securejoin), so no entry can write
// outside the root however its names and links are crafted. Nothing is ever opened by a
// path that might pass through a symlink the layer planted.
type unpacker struct {
	root    *os.File
	parents map[string]*os.File // parent handles by clean relative path
	dirs    []dirTimes
	buf     []byte
	size    int64
}

type dirTimes struct {
	rel   string
	times []unix.Timespec
}

func unpackTar(ctx context.Context, r io.Reader, dir string) (int64, error) {
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	u := &unpacker{root: root, parents: map[string]*os.File{}, buf: make([]byte, 256<<10)}
	defer u.close()

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, errdefs.Invalid(fmt.Errorf("read tar: %w", err))
		}
		if err := u.entry(hdr, tr); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return 0, errdefs.NoSpace(err)
			}
			return 0, err
		}
	}
	// Directory times last: creating entries inside a directory changes its mtime.
	if err := setDirTimes(u.root, u.dirs); err != nil {
		return 0, err
	}
	return u.size, nil
}

// setDirTimes sets the times of directories given relative to root. Each is looked up
// again beneath root without following any symlink: a later entry may have replaced a
// directory, or one of its parents, by a symlink pointing anywhere, even off the root.
// A directory that no longer resolves that way is skipped.
func setDirTimes(root *os.File, dirs []dirTimes) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		fd, err := unix.Openat2(int(root.Fd()), orDot(d.rel), &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			continue
		}
		// Through the descriptor's magic link: it names exactly the directory opened.
		err = unix.UtimesNanoAt(unix.AT_FDCWD, procPath(fd, ""), d.times, 0)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("set times of %s: %w", d.rel, err)
		}
	}
	return nil
}

func (u *unpacker) close() {
	u.forget()
	u.root.Close()
}

// forget drops every cached parent handle.
func (u *unpacker) forget() {
	for k, f := range u.parents {
		f.Close()
		delete(u.parents, k)
	}
}

// forgetUnder drops the cached handles of rel and of what lies below it: rel is being
// removed or replaced, and a cached handle there would lead into the old tree (or, for a
// symlink, into its old target). The handles of rel's parents stay valid and open.
func (u *unpacker) forgetUnder(rel string) {
	for k, f := range u.parents {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			f.Close()
			delete(u.parents, k)
		}
	}
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// parent returns a handle of directory rel, creating it (mode 0755) if it is missing.
func (u *unpacker) parent(rel string) (*os.File, error) {
	if rel == "" {
		return u.root, nil
	}
	if f, ok := u.parents[rel]; ok {
		return f, nil
	}
	f, err := pathrs.MkdirAllHandle(u.root, rel, 0o755)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return nil, err
		}
		// A parent that cannot be made inside the root (a dangling or looping symlink,
		// a file where a directory should be) makes the layer unusable.
		return nil, errdefs.Invalid(err)
	}
	u.parents[rel] = f
	return f, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanEntryName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		// The layer root itself: only its metadata applies.
		if hdr.Typeflag != tar.TypeDir {
			return errdefs.Invalid(fmt.Errorf("entry %q: the layer root must be a directory", hdr.Name))
		}
		return u.rootMeta(hdr)
	}
	dirRel, base := path.Split(rel)
	dirRel = strings.TrimSuffix(dirRel, "/")
	parent, err := u.parent(dirRel)
	if err != nil {
		return fmt.Errorf("entry %q: parent directory: %w", hdr.Name, err)
	}
	pfd := int(parent.Fd())

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(parent, dirRel, base, hdr.Name)
	}

	if hdr.Typeflag == tar.TypeDir {
		var st unix.Stat_t
		err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := u.removeAt(parent, dirRel, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			err = unix.Mkdirat(pfd, base, 0o700)
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		return u.metaAt(parent, base, rel, hdr)
	}

	// Anything else replaces what the name held before, never writing through it.
	if err := u.removeAt(parent, dirRel, base); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := u.file(pfd, base, hdr, r); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		if err := u.hardlink(pfd, base, hdr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		return nil // a hard link shares its target's inode and metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, mode, int(dev)); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	default:
		return errdefs.Invalid(fmt.Errorf("entry %q: unsupported tar entry type %q", hdr.Name, string(hdr.Typeflag)))
	}
	return u.metaAt(parent, base, rel, hdr)
}

func (u *unpacker) file(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	n, err := io.CopyBuffer(f, r, u.buf)
	u.size += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (u *unpacker) hardlink(pfd int, base string, hdr *tar.Header) error {
	target, err := cleanEntryName(hdr.Linkname)
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("hard link target %q escapes the layer root", hdr.Linkname))
	}
	if target == "" {
		return errdefs.Invalid(fmt.Errorf("hard link to the layer root"))
	}
	tdir, tbase := path.Split(target)
	tparent, err := u.parent(strings.TrimSuffix(tdir, "/"))
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(tparent.Fd()), tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return errdefs.Invalid(fmt.Errorf("hard link target %q is not in this layer: %w", hdr.Linkname, err))
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errdefs.Invalid(fmt.Errorf("hard link target %q is a directory", hdr.Linkname))
	}
	return unix.Linkat(int(tparent.Fd()), tbase, pfd, base, 0)
}

// whiteout records a deletion from a lower layer the way overlayfs reads it.
func (u *unpacker) whiteout(parent *os.File, dirRel, base, entry string) error {
	if base == whiteoutOpaque {
		if err := unix.Lsetxattr(procPath(int(parent.Fd()), "."), overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("entry %q: mark %q opaque: %w", entry, orDot(dirRel), err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, ...) has no meaning here
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return errdefs.Invalid(fmt.Errorf("entry %q: invalid whiteout", entry))
	}
	if err := u.removeAt(parent, dirRel, target); err != nil {
		return fmt.Errorf("entry %q: %w", entry, err)
	}
	if err := unix.Mknodat(int(parent.Fd()), target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("entry %q: %w", entry, err)
	}
	return nil
}

// removeAt removes whatever base names inside parent (which is dirRel), if anything.
func (u *unpacker) removeAt(parent *os.File, dirRel, base string) error {
	pfd := int(parent.Fd())
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	u.forgetUnder(path.Join(dirRel, base))
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(pfd, base, 0)
	}
	return removeAllAt(pfd, base)
}

// removeAllAt removes the directory base inside dirfd and everything below it, without
// following symlinks.
func removeAllAt(dirfd int, base string) error {
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		if err := unix.Unlinkat(fd, n, 0); err != nil {
			if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
				d.Close()
				return err
			}
			if err := removeAllAt(fd, n); err != nil {
				d.Close()
				return err
			}
		}
	}
	d.Close()
	return unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
}

// metaAt applies ownership, mode, xattrs and times to base inside parent.
func (u *unpacker) metaAt(parent *os.File, base, rel string, hdr *tar.Header) error {
	pfd := int(parent.Fd())
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("entry %q: chown: %w", hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid and setgid bits.
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("entry %q: chmod: %w", hdr.Name, err)
		}
	}
	if err := u.xattrs(procPath(pfd, base), hdr); err != nil {
		return err
	}
	times := tarTimes(hdr)
	if hdr.Typeflag == tar.TypeDir {
		u.dirs = append(u.dirs, dirTimes{rel: rel, times: times})
		return nil
	}
	if err := unix.UtimesNanoAt(pfd, base, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("entry %q: set times: %w", hdr.Name, err)
	}
	return nil
}

// rootMeta applies the metadata of the layer root entry.
func (u *unpacker) rootMeta(hdr *tar.Header) error {
	fd := int(u.root.Fd())
	if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("layer root: chown: %w", err)
	}
	if err := unix.Fchmodat(fd, ".", uint32(hdr.Mode&0o7777), 0); err != nil {
		return fmt.Errorf("layer root: chmod: %w", err)
	}
	if err := u.xattrs(procPath(fd, "."), hdr); err != nil {
		return err
	}
	u.dirs = append(u.dirs, dirTimes{rel: "", times: tarTimes(hdr)})
	return nil
}

func (u *unpacker) xattrs(p string, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		// overlayfs's own attributes would change how the layer stacks (redirects,
		// origins): a layer may not set them. Opaque directories come as .wh..wh..opq.
		if strings.HasPrefix(attr, "trusted.overlay.") {
			continue
		}
		err := unix.Lsetxattr(p, attr, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) || (hdr.Typeflag == tar.TypeSymlink && errors.Is(err, unix.EPERM)) {
			continue // the filesystem (or a symlink) cannot hold this kind of attribute
		}
		if err != nil {
			return fmt.Errorf("entry %q: set xattr %s: %w", hdr.Name, attr, err)
		}
	}
	return nil
}

// procPath names base inside the directory open as fd without resolving any path again.
func procPath(fd int, base string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if base == "" {
		return p
	}
	return p + "/" + base
}

func tarTimes(hdr *tar.Header) []unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return []unix.Timespec{timespec(at), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return unix.NsecToTimespec(0)
	}
	return unix.NsecToTimespec(t.UnixNano())
}

package fs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// The operations of a passthrough directory, on Linux. Each resolves the directory it
// works in (or the node itself, not following it if it is a symbolic link) with openat2
// inside the directory's root, and then acts on a name in it with an *at call that does
// not follow the name, or on the node through its descriptor. What has no such call
// (chmod, truncate, extended attributes) goes through /proc/self/fd/N of a descriptor
// checked to be no symbolic link, which reaches that very file.

var _ gofs.NodeTmpfiler = (*passNode)(nil)

// umask is the daemon's: the kernel applied the caller's to the modes it asks for, and
// the daemon's must not take more away.
var umask = func() uint32 {
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return uint32(m)
}()

// rootPath is the path of the top of a directory whose paths are path: resolved inside
// the directory's root, they are the same.
func (d *passDir) rootPath(path string) string { return path }

// resolve opens path (absolute in the directory's root) with flags, never following
// its last component.
func (d *passDir) resolve(path string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_NO_MAGICLINKS,
	}
	if d.state == nil {
		return fsutil.Openat2(unix.AT_FDCWD, path, &how)
	}
	how.Resolve |= unix.RESOLVE_IN_ROOT
	return d.state.openat2(path, &how)
}

// openat2 resolves path under the root, opening it the first time.
func (s *rootfsState) openat2(path string, how *unix.OpenHow) (int, error) {
	s.rootMu.RLock()
	if s.root < 0 {
		s.rootMu.RUnlock()
		s.rootMu.Lock()
		if s.closed {
			s.rootMu.Unlock()
			return -1, syscall.ESTALE
		}
		if s.root < 0 {
			fd, err := unix.Open(s.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				s.rootMu.Unlock()
				return -1, err
			}
			s.root = fd
		}
		s.rootMu.Unlock()
		s.rootMu.RLock()
	}
	defer s.rootMu.RUnlock()
	if s.root < 0 {
		return -1, syscall.ESTALE
	}
	root := s.root
	if s.sub != "" {
		// The directory served, as it is now (a rootfs is mounted there while its
		// container runs): a plain name in the daemon's own directory.
		sub, err := unix.Openat2(s.root, s.sub, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return -1, err
		}
		defer unix.Close(sub)
		root = sub
	}
	return fsutil.Openat2(root, path, how)
}

// path is where the node is, absolute in its directory's root.
func (n *passNode) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

// inDir runs f on the node's directory (O_PATH).
func (n *passNode) inDir(f func(dir int) syscall.Errno) syscall.Errno {
	return n.with(unix.O_PATH|unix.O_DIRECTORY, f)
}

// onSelf runs f on the node itself (O_PATH; a symbolic link is not followed).
func (n *passNode) onSelf(f func(fd int) syscall.Errno) syscall.Errno {
	return n.with(unix.O_PATH, f)
}

// with runs f on the node opened with flags.
func (n *passNode) with(flags int, f func(fd int) syscall.Errno) syscall.Errno {
	fd, err := n.d.resolve(n.path(), flags)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return f(fd)
}

// statAt stats name in dir (the descriptor itself if name is empty), not following it.
func statAt(dir int, name string, st *syscall.Stat_t) (gen uint64, err error) {
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_SYNC_AS_STAT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var x unix.Statx_t
	if err := unix.Statx(dir, name, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &x); err != nil {
		return 0, err
	}
	*st = syscall.Stat_t{
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Nlink:   uint64(x.Nlink),
		Mode:    uint32(x.Mode),
		Uid:     x.Uid,
		Gid:     x.Gid,
		Rdev:    unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		Size:    int64(x.Size),
		Blksize: int64(x.Blksize),
		Blocks:  int64(x.Blocks),
		Atim:    syscall.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
		Mtim:    syscall.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
		Ctim:    syscall.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
	}
	// The generation tells apart files that reuse an inode number, as go-fuse's loopback
	// does: by birth time, where the filesystem keeps it.
	gen = 1
	if x.Mask&unix.STATX_BTIME != 0 && (x.Btime.Sec != 0 || x.Btime.Nsec != 0) {
		gen = uint64(x.Btime.Sec)*1e9 + uint64(x.Btime.Nsec)
	}
	return gen, nil
}

// child makes the node of the file st describes, name in n.
func (n *passNode) child(ctx context.Context, st *syscall.Stat_t, gen uint64, out *fuse.EntryOut) *gofs.Inode {
	if n.d.overlay {
		gen = 1
	}
	out.Attr.FromStat(st)
	id := gofs.StableAttr{Mode: st.Mode, Gen: gen, Ino: backedIno(n.RootData, st)}
	out.Attr.Ino = id.Ino
	return n.NewInode(ctx, &gofs.LoopbackNode{RootData: n.RootData}, id)
}

// childAt makes the node of name in dir (of dir itself if name is empty).
func (n *passNode) childAt(ctx context.Context, dir int, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	gen, err := statAt(dir, name, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return n.child(ctx, &st, gen, out), 0
}

// made finishes what the caller made as name in dir (fd, if it is open already; -1
// otherwise): gives it to the caller (the daemon made it as root), restores the mode
// bits the daemon's umask took, and makes its node. It acts on the file through a
// descriptor, checked to be what was made: a container can rename another of its files
// onto the name meanwhile. What fails is undone by undo.
func (n *passNode) made(ctx context.Context, dir int, name string, fd int, mode uint32, out *fuse.EntryOut, undo func()) (*gofs.Inode, syscall.Errno) {
	if fd < 0 {
		var err error
		if fd, err = unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return nil, gofs.ToErrno(err)
		}
		defer syscall.Close(fd)
	}
	var st syscall.Stat_t
	if _, err := statAt(fd, "", &st); err != nil {
		undo()
		return nil, gofs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT != mode&syscall.S_IFMT || st.Uid != 0 || (st.Mode&syscall.S_IFMT != syscall.S_IFDIR && st.Nlink != 1) {
		return nil, syscall.ESTALE // not what the daemon made: leave it alone
	}
	if errno := n.giveToCaller(ctx, dir, fd, mode, &st); errno != 0 {
		undo()
		return nil, errno
	}
	ch, errno := n.childAt(ctx, fd, "", out)
	if errno != 0 {
		undo()
	}
	return ch, errno
}

// giveToCaller makes the file fd (O_PATH, or open), which the daemon made as root in
// dir with mode and which st describes, the caller's: its user, its group unless dir
// hands down its own (set-group-ID), as the kernel does for one who makes a file
// himself; and the mode bits asked for that the daemon's umask took.
func (n *passNode) giveToCaller(ctx context.Context, dir, fd int, mode uint32, st *syscall.Stat_t) syscall.Errno {
	if c, ok := fuse.FromContext(ctx); ok {
		gid := int(c.Gid)
		var dst syscall.Stat_t
		if _, err := statAt(dir, "", &dst); err != nil {
			return gofs.ToErrno(err)
		}
		if dst.Mode&syscall.S_ISGID != 0 {
			gid = -1
		}
		if err := unix.Fchownat(fd, "", int(c.Uid), gid, unix.AT_EMPTY_PATH); err != nil {
			return gofs.ToErrno(err)
		}
	}
	// Changing the owner clears the set-user-ID and set-group-ID bits of a file; a new
	// directory keeps the set-group-ID bit it takes from its parent.
	if mode&syscall.S_IFMT != syscall.S_IFLNK && (mode&umask&0o777 != 0 || mode&(syscall.S_ISUID|syscall.S_ISGID) != 0) {
		perm := mode & 0o7777
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			perm |= st.Mode & syscall.S_ISGID
		}
		return gofs.ToErrno(syscall.Chmod(procFd(fd), perm))
	}
	return 0
}

// chmodFd changes the mode of the file fd refers to (O_PATH), unless it is a symbolic
// link, whose mode Linux does not change.
func chmodFd(fd int, mode uint32) syscall.Errno {
	var st syscall.Stat_t
	if _, err := statAt(fd, "", &st); err != nil {
		return gofs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return syscall.EOPNOTSUPP
	}
	return gofs.ToErrno(syscall.Chmod(procFd(fd), mode))
}

// procFd is the path that reaches the file fd refers to.
func procFd(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

func (n *passNode) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.onSelf(func(fd int) syscall.Errno {
		var s syscall.Statfs_t
		if err := syscall.Fstatfs(fd, &s); err != nil {
			return gofs.ToErrno(err)
		}
		out.FromStatfsT(&s)
		return 0
	})
}

func (n *passNode) lookup(ctx context.Context, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.inDir(func(dir int) (errno syscall.Errno) {
		ch, errno = n.childAt(ctx, dir, name, out)
		return errno
	})
	return ch, errno
}

func (n *passNode) readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	fd, err := n.d.resolve(n.path(), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	if _, err := statAt(fd, "", &st); err != nil {
		syscall.Close(fd)
		return nil, gofs.ToErrno(err)
	}
	ds, errno := gofs.NewLoopbackDirStreamFd(fd)
	if errno != 0 {
		syscall.Close(fd)
		return nil, errno
	}
	return &passDirStream{DirStream: ds, root: n.RootData, dev: st.Dev}, 0
}

// passDirStream lists a directory with the inode numbers its files show on stat.
type passDirStream struct {
	gofs.DirStream
	root *gofs.LoopbackRoot
	// dev is the directory's device, which its files share (but for mount points).
	dev uint64
}

var (
	_ gofs.FileReaddirenter = (*passDirStream)(nil)
	_ gofs.FileSeekdirer    = (*passDirStream)(nil)
	_ gofs.FileReleasedirer = (*passDirStream)(nil)
	_ gofs.FileFsyncdirer   = (*passDirStream)(nil)
)

func (s *passDirStream) Next() (fuse.DirEntry, syscall.Errno) {
	e, errno := s.DirStream.Next()
	e.Ino = backedIno(s.root, &syscall.Stat_t{Dev: s.dev, Ino: e.Ino})
	return e, errno
}

func (s *passDirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	e, errno := s.DirStream.(gofs.FileReaddirenter).Readdirent(ctx)
	if e != nil {
		e.Ino = backedIno(s.root, &syscall.Stat_t{Dev: s.dev, Ino: e.Ino})
	}
	return e, errno
}

func (s *passDirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return s.DirStream.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

func (s *passDirStream) Releasedir(ctx context.Context, flags uint32) {
	s.DirStream.(gofs.FileReleasedirer).Releasedir(ctx, flags)
}

func (s *passDirStream) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return s.DirStream.(gofs.FileFsyncdirer).Fsyncdir(ctx, flags)
}

func (n *passNode) getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if g, ok := fh.(gofs.FileGetattrer); ok {
		return g.Getattr(ctx, out)
	}
	return n.onSelf(func(fd int) syscall.Errno {
		var st syscall.Stat_t
		if _, err := statAt(fd, "", &st); err != nil {
			return gofs.ToErrno(err)
		}
		out.FromStat(&st)
		return 0
	})
}

func (n *passNode) setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if s, ok := fh.(gofs.FileSetattrer); ok {
		return s.Setattr(ctx, in, out)
	}
	return n.onSelf(func(fd int) syscall.Errno {
		if m, ok := in.GetMode(); ok {
			if errno := chmodFd(fd, m); errno != 0 {
				return errno
			}
		}
		uid, uok := in.GetUID()
		gid, gok := in.GetGID()
		if uok || gok {
			u, g := -1, -1
			if uok {
				u = int(uid)
			}
			if gok {
				g = int(gid)
			}
			if err := unix.Fchownat(fd, "", u, g, unix.AT_EMPTY_PATH); err != nil {
				return gofs.ToErrno(err)
			}
		}
		// Truncate before setting times, so that an explicit mtime stays.
		if size, ok := in.GetSize(); ok {
			if errno := truncateFd(fd, int64(size)); errno != 0 {
				return errno
			}
		}
		mtime, mok := in.GetMTime()
		atime, aok := in.GetATime()
		if mok || aok {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
			if aok {
				ts[0] = unix.NsecToTimespec(atime.UnixNano())
			}
			if mok {
				ts[1] = unix.NsecToTimespec(mtime.UnixNano())
			}
			if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
				return gofs.ToErrno(err)
			}
		}
		var st syscall.Stat_t
		if _, err := statAt(fd, "", &st); err != nil {
			return gofs.ToErrno(err)
		}
		out.FromStat(&st)
		return 0
	})
}

// truncateFd truncates the regular file fd refers to (O_PATH).
func truncateFd(fd int, size int64) syscall.Errno {
	f, errno := reopenRegular(fd, syscall.O_WRONLY)
	if errno != 0 {
		return errno
	}
	defer syscall.Close(f)
	return gofs.ToErrno(syscall.Ftruncate(f, size))
}

// reopenRegular opens the file fd refers to (O_PATH) with flags, if it is a regular
// file. The daemon opens as root: a device node (a container may put one where the tree
// saw a regular file) would hand the caller the host's disk or memory, and a FIFO would
// block. The descriptor is checked, and the file opened through it, which a swap
// cannot change.
func reopenRegular(fd int, flags int) (int, syscall.Errno) {
	var st syscall.Stat_t
	if _, err := statAt(fd, "", &st); err != nil {
		return -1, gofs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return -1, syscall.EPERM
	}
	f, err := syscall.Open(procFd(fd), flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, gofs.ToErrno(err)
	}
	return f, 0
}

func (n *passNode) open(ctx context.Context, flags uint32) (fh gofs.FileHandle, errno syscall.Errno) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOCTTY | syscall.O_NOFOLLOW
	errno = n.onSelf(func(fd int) syscall.Errno {
		f, errno := reopenRegular(fd, int(flags))
		if errno == 0 {
			fh = gofs.NewLoopbackFile(f)
		}
		return errno
	})
	return fh, errno
}

func (n *passNode) create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, errno syscall.Errno) {
	// The kernel asks to create a name it knows as absent; O_EXCL and O_NOFOLLOW keep a
	// name a container made meanwhile (a device node, a symbolic link) from being opened.
	flags = flags&^(syscall.O_APPEND|fuse.FMODE_EXEC|syscall.O_NOCTTY) | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	errno = n.inDir(func(dir int) syscall.Errno {
		fd, err := unix.Openat(dir, name, int(flags), mode&0o7777)
		if err != nil {
			return gofs.ToErrno(err)
		}
		ch, errno = n.made(ctx, dir, name, fd, syscall.S_IFREG|mode, out, func() { unix.Unlinkat(dir, name, 0) })
		if errno != 0 {
			syscall.Close(fd)
			return errno
		}
		fh = gofs.NewLoopbackFile(fd)
		return 0
	})
	return ch, fh, errno
}

func (n *passNode) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, fl uint32, errno syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, nil, 0, errno
	}
	flags = flags&^(syscall.O_APPEND|fuse.FMODE_EXEC|syscall.O_NOCTTY) | unix.O_TMPFILE | syscall.O_CLOEXEC
	errno = n.inDir(func(dir int) syscall.Errno {
		fd, err := unix.Openat(dir, ".", int(flags), mode&0o7777)
		if err != nil {
			return gofs.ToErrno(err)
		}
		var st syscall.Stat_t
		if _, err := statAt(fd, "", &st); err != nil {
			syscall.Close(fd)
			return gofs.ToErrno(err)
		}
		if errno = n.giveToCaller(ctx, dir, fd, syscall.S_IFREG|mode, &st); errno != 0 {
			syscall.Close(fd)
			return errno
		}
		if ch, errno = n.childAt(ctx, fd, "", out); errno != 0 {
			syscall.Close(fd)
			return errno
		}
		fh = gofs.NewLoopbackFile(fd)
		return 0
	})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, n.d.openFlags(), 0
}

func (n *passNode) mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.inDir(func(dir int) syscall.Errno {
		if err := unix.Mkdirat(dir, name, mode&0o7777); err != nil {
			return gofs.ToErrno(err)
		}
		ch, errno = n.made(ctx, dir, name, -1, syscall.S_IFDIR|mode, out, func() { unix.Unlinkat(dir, name, unix.AT_REMOVEDIR) })
		return errno
	})
	return ch, errno
}

func (n *passNode) mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.inDir(func(dir int) syscall.Errno {
		if err := unix.Mknodat(dir, name, mode, int(rdev)); err != nil {
			return gofs.ToErrno(err)
		}
		ch, errno = n.made(ctx, dir, name, -1, mode, out, func() { unix.Unlinkat(dir, name, 0) })
		return errno
	})
	return ch, errno
}

func (n *passNode) symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.inDir(func(dir int) syscall.Errno {
		if err := unix.Symlinkat(target, dir, name); err != nil {
			return gofs.ToErrno(err)
		}
		ch, errno = n.made(ctx, dir, name, -1, syscall.S_IFLNK, out, func() { unix.Unlinkat(dir, name, 0) })
		return errno
	})
	return ch, errno
}

// link links target's file itself (by its descriptor), whatever is at its name now.
func (n *passNode) link(ctx context.Context, target *passNode, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	// A file made with O_TMPFILE is in no directory: LINK does not carry its descriptor.
	if _, parent := target.Parent(); parent == nil {
		return nil, syscall.EXDEV
	}
	errno = target.onSelf(func(fd int) syscall.Errno {
		return n.inDir(func(dir int) (errno syscall.Errno) {
			if err := unix.Linkat(fd, "", dir, name, unix.AT_EMPTY_PATH); err != nil {
				return gofs.ToErrno(err)
			}
			ch, errno = n.childAt(ctx, dir, name, out)
			return errno
		})
	})
	return ch, errno
}

func (n *passNode) readlink(ctx context.Context) (b []byte, errno syscall.Errno) {
	errno = n.onSelf(func(fd int) syscall.Errno {
		for size := 256; ; size *= 2 {
			buf := make([]byte, size)
			k, err := unix.Readlinkat(fd, "", buf)
			if err != nil {
				return gofs.ToErrno(err)
			}
			if k < size {
				b = buf[:k]
				return 0
			}
		}
	})
	return b, errno
}

func (n *passNode) unlink(ctx context.Context, name string, dir bool) syscall.Errno {
	flags := 0
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	return n.inDir(func(d int) syscall.Errno { return gofs.ToErrno(unix.Unlinkat(d, name, flags)) })
}

func (n *passNode) rename(ctx context.Context, name string, newParent *passNode, newName string, flags uint32) syscall.Errno {
	return n.inDir(func(from int) syscall.Errno {
		return newParent.inDir(func(to int) syscall.Errno {
			return gofs.ToErrno(unix.Renameat2(from, name, to, newName, uint(flags)))
		})
	})
}

// onXattrs runs f on the path that reaches the node's extended attributes. A symbolic
// link's are not reached through /proc (the path would name the link in /proc), and
// Linux keeps none a user may set on one: for a link, onXattrs answers onLink.
func (n *passNode) onXattrs(onLink syscall.Errno, f func(path string) syscall.Errno) syscall.Errno {
	return n.onSelf(func(fd int) syscall.Errno {
		var st syscall.Stat_t
		if _, err := statAt(fd, "", &st); err != nil {
			return gofs.ToErrno(err)
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			return onLink
		}
		return f(procFd(fd))
	})
}

func (n *passNode) getxattr(ctx context.Context, attr string, dest []byte) (size uint32, errno syscall.Errno) {
	errno = n.onXattrs(syscall.ENODATA, func(p string) syscall.Errno {
		k, err := unix.Getxattr(p, attr, dest)
		size = uint32(k)
		return gofs.ToErrno(err)
	})
	return size, errno
}

func (n *passNode) listxattr(ctx context.Context, dest []byte) (size uint32, errno syscall.Errno) {
	errno = n.onXattrs(0, func(p string) syscall.Errno {
		k, err := unix.Listxattr(p, dest)
		size = uint32(k)
		return gofs.ToErrno(err)
	})
	return size, errno
}

func (n *passNode) setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.onXattrs(syscall.EPERM, func(p string) syscall.Errno {
		return gofs.ToErrno(unix.Setxattr(p, attr, data, int(flags)))
	})
}

func (n *passNode) removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.onXattrs(syscall.ENODATA, func(p string) syscall.Errno {
		return gofs.ToErrno(unix.Removexattr(p, attr))
	})
}

// renameIn renames name in directory from to newName in directory to, both of the
// directory of d (the tree's backing directory).
func (d *passDir) renameIn(from, name, to, newName string, flags uint32) syscall.Errno {
	a, err := d.resolve(from, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(a)
	b, err := d.resolve(to, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(b)
	return gofs.ToErrno(unix.Renameat2(a, name, b, newName, uint(flags)))
}

// list lists the directory at path of d (the tree's backing directory), with the mode
// and inode number of each file.
func (d *passDir) list(path string, root *gofs.LoopbackRoot) ([]fuse.DirEntry, error) {
	fd, err := d.resolve(path, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	ds, errno := gofs.NewLoopbackDirStreamFd(fd)
	if errno != 0 {
		return nil, errno
	}
	var out []fuse.DirEntry
	for ds.HasNext() {
		e, errno := ds.Next()
		if errno != 0 {
			return nil, errno
		}
		if e.Name == "." || e.Name == ".." {
			continue
		}
		var st syscall.Stat_t
		if _, err := statAt(fd, e.Name, &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			return nil, err
		}
		out = append(out, fuse.DirEntry{Name: e.Name, Mode: st.Mode, Ino: backedIno(root, &st)})
	}
	return out, nil
}

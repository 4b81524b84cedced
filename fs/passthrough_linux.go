package fs

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var (
	_ gofs.NodeTmpfiler = (*passNode)(nil)
)

func (n *passNode) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, fl uint32, errno syscall.Errno) {
	if n.d.ro {
		return nil, nil, 0, syscall.EROFS
	}
	if e := n.in(ctx, func() { ch, fh, fl, errno = n.LoopbackNode.Tmpfile(ctx, flags, mode, out) }); e != 0 {
		return nil, nil, 0, e
	}
	return ch, fh, fl, errno
}

// Open opens regular files only. The daemon opens as root: a device node (a container
// may put one where the tree saw a regular file, after its lookup) would hand its reader
// the host's disk or memory, and a FIFO would block. So the file is first opened as a
// bare reference (O_PATH, which runs no driver), checked, and then opened for real
// through that reference, which a swap cannot change.
func (n *passNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.d.ro && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EPERM
	}
	path := filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
	ref := -1
	var err error
	if e := n.in(ctx, func() { ref, err = openRegular(path) }); e != 0 {
		return nil, 0, e
	}
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	defer syscall.Close(ref)
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOCTTY | syscall.O_NOFOLLOW
	fd, err := syscall.Open(fmt.Sprintf("/proc/self/fd/%d", ref), int(flags)|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	return gofs.NewLoopbackFile(fd), 0, 0
}

// openRegular opens path as a reference (O_PATH, not following a final symbolic link)
// if it is a regular file.
func openRegular(path string) (int, error) {
	fd, err := syscall.Open(path, unix.O_PATH|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return -1, syscall.EPERM
	}
	return fd, nil
}

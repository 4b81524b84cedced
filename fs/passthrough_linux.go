package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ gofs.NodeStatxer  = (*passNode)(nil)
	_ gofs.NodeTmpfiler = (*passNode)(nil)
)

// Statx is Getattr's richer twin; the top of a container's rootfs is mounted for it.
func (n *passNode) Statx(ctx context.Context, fh gofs.FileHandle, flags, mask uint32, out *fuse.StatxOut) (errno syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	if e := n.in(func() { errno = n.LoopbackNode.Statx(ctx, fh, flags, mask, out) }); e != 0 {
		return e
	}
	if n.top {
		out.Ino = n.StableAttr().Ino
	}
	return errno
}

func (n *passNode) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, fl uint32, errno syscall.Errno) {
	if n.d.ro {
		return nil, nil, 0, syscall.EROFS
	}
	if e := n.in(func() { ch, fh, fl, errno = n.LoopbackNode.Tmpfile(ctx, flags, mode, out) }); e != 0 {
		return nil, nil, 0, e
	}
	return ch, fh, fl, errno
}

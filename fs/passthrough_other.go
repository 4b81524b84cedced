//go:build !linux

package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// Open opens regular files only (see the Linux version, which also guards against a
// file swapped after its lookup).
func (n *passNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.d.ro && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EPERM
	}
	return n.LoopbackNode.Open(ctx, flags|syscall.O_NOFOLLOW)
}

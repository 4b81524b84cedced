package fs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// passNode is a directory of the tree served as a passthrough to a real one (go-fuse's
// loopback, with the kernel's FUSE passthrough for file data): a container's rootfs/,
// read-write, and an image's layers and rootfs/, read-only. Owners, modes and times are
// the real ones, so that cp -a, rsync and tar copy them faithfully.
//
// The top node has prepare, which makes the real directory ready (mounts it) when it is
// first looked into, and again after the engine unmounted it (a container that stopped).
type passNode struct {
	gofs.LoopbackNode
	ro bool
	t  *tree
	// prepare makes the real directory ready; only the top node has it. ready tells
	// that it did, since the engine last unmounted the directory; without ready,
	// prepare runs on every lookup and listing of the top directory.
	prepare func(ctx context.Context) error
	ready   *atomic.Bool
}

var (
	_ gofs.NodeLookuper       = (*passNode)(nil)
	_ gofs.NodeOpendirHandler = (*passNode)(nil)
	_ gofs.NodeGetattrer      = (*passNode)(nil)
	_ gofs.NodeSetattrer      = (*passNode)(nil)
	_ gofs.NodeOpener         = (*passNode)(nil)
	_ gofs.NodeCreater        = (*passNode)(nil)
	_ gofs.NodeMkdirer        = (*passNode)(nil)
	_ gofs.NodeMknoder        = (*passNode)(nil)
	_ gofs.NodeSymlinker      = (*passNode)(nil)
	_ gofs.NodeLinker         = (*passNode)(nil)
	_ gofs.NodeUnlinker       = (*passNode)(nil)
	_ gofs.NodeRmdirer        = (*passNode)(nil)
	_ gofs.NodeRenamer        = (*passNode)(nil)
	_ gofs.NodeSetxattrer     = (*passNode)(nil)
	_ gofs.NodeRemovexattrer  = (*passNode)(nil)
	_ gofs.NodeCopyFileRanger = (*passNode)(nil)
	_ gofs.NodeWrapChilder    = (*passNode)(nil)
)

// newPassDir makes the top node of a passthrough to the directory at path. The inode
// numbers of what is under it are the real ones mixed with key's hash: go-fuse keeps one
// node per inode number, and the same real file can show in several places (a layer
// shared by two images, and the rootfs/ of a one-layer image).
func (t *tree) newPassDir(path, key string, ro bool, ready *atomic.Bool, prepare func(ctx context.Context) error) *passNode {
	root := &gofs.LoopbackRoot{Path: path, Dev: ino(key) &^ (1 << 63)}
	n := &passNode{LoopbackNode: gofs.LoopbackNode{RootData: root}, ro: ro, t: t, prepare: prepare, ready: ready}
	root.RootNode = n
	return n
}

// WrapChild makes the nodes under a read-only top read-only too.
func (n *passNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if lb, ok := ops.(*gofs.LoopbackNode); ok && n.ro {
		return &passNode{LoopbackNode: gofs.LoopbackNode{RootData: lb.RootData}, ro: true}
	}
	return ops
}

// ensure prepares the real directory if this is the top node and it is not ready.
func (n *passNode) ensure(ctx context.Context) syscall.Errno {
	if n.prepare == nil || (n.ready != nil && n.ready.Load()) {
		return 0
	}
	if err := n.prepare(ctx); err != nil {
		return toErrno(err)
	}
	if n.ready != nil {
		n.ready.Store(true)
	}
	return 0
}

func (n *passNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *passNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, 0, errno
	}
	return n.LoopbackNode.OpendirHandle(ctx, flags)
}

// Getattr of the top node does not mount: ls -l of a container's directory shows its
// rootfs/ without mounting it.
func (n *passNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.prepare != nil && n.ready != nil && !n.ready.Load() {
		n.t.attr(&out.Attr, syscall.S_IFDIR|0o755, 4096, time.Time{})
		out.Uid, out.Gid = 0, 0
		out.SetTimeout(stableTimeout)
		return 0
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	errno := n.LoopbackNode.Getattr(ctx, fh, out)
	if n.prepare != nil {
		out.Ino = n.StableAttr().Ino
	}
	return errno
}

func (n *passNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *passNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.ro && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	return n.LoopbackNode.Open(ctx, flags)
}

func (n *passNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.ro {
		return nil, nil, 0, syscall.EROFS
	}
	return n.LoopbackNode.Create(ctx, name, flags, mode, out)
}

func (n *passNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.ro {
		return nil, syscall.EROFS
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *passNode) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.ro {
		return nil, syscall.EROFS
	}
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *passNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.ro {
		return nil, syscall.EROFS
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *passNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.ro {
		return nil, syscall.EROFS
	}
	if p, ok := target.(*passNode); ok {
		target = &p.LoopbackNode
	}
	return n.LoopbackNode.Link(ctx, target, name, out)
}

func (n *passNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *passNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *passNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *passNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *passNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.ro {
		return syscall.EROFS
	}
	return n.LoopbackNode.Removexattr(ctx, attr)
}

func (n *passNode) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if n.ro {
		return 0, syscall.EROFS
	}
	return n.LoopbackNode.CopyFileRange(ctx, fhIn, offIn, out, fhOut, offOut, length, flags)
}

// readiness remembers, per container, whether its rootfs/ is mounted for the tree; the
// engine's events reset it when the container stops.
type readiness struct{ m sync.Map }

func (r *readiness) get(id string) *atomic.Bool {
	v, _ := r.m.LoadOrStore(id, new(atomic.Bool))
	return v.(*atomic.Bool)
}

// reset marks container id's rootfs/ as to be mounted again.
func (r *readiness) reset(id string) {
	if v, ok := r.m.Load(id); ok {
		v.(*atomic.Bool).Store(false)
	}
}

func (r *readiness) forget(id string) { r.m.Delete(id) }

package fs

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// passNode is a node of a directory the tree serves as a passthrough to a real one
// (go-fuse's loopback, with the kernel's FUSE passthrough for file data): a container's
// rootfs/, read-write, and an image's layers and rootfs/, read-only. Owners, modes and
// times are the real ones, so that cp -a, rsync and tar copy them faithfully.
//
// The loopback resolves host paths from names. A container's processes can change its
// rootfs under the tree (swap a directory for a symbolic link to / between a lookup and
// the operation after it), so every operation on a rootfs runs in a jail rooted at the
// container's storage directory, where the rootfs is /merged: no path leads out of it.
// Image layers and views never change once made, and are served directly.
type passNode struct {
	gofs.LoopbackNode
	d *passDir
	// top is the node of the directory itself.
	top bool
}

// passDir is what the nodes of one passthrough directory share.
type passDir struct {
	t  *tree
	ro bool
	// prepare makes the real directory ready (mounts it). A container's rootfs has
	// state, which remembers that it did until the container stops, and the jail;
	// an image's directories are prepared on every look at the top.
	prepare func(ctx context.Context) error
	state   *rootfsState
}

var (
	_ gofs.NodeStatfser       = (*passNode)(nil)
	_ gofs.NodeLookuper       = (*passNode)(nil)
	_ gofs.NodeOpendirHandler = (*passNode)(nil)
	_ gofs.NodeReaddirer      = (*passNode)(nil)
	_ gofs.NodeGetattrer      = (*passNode)(nil)
	_ gofs.NodeSetattrer      = (*passNode)(nil)
	_ gofs.NodeOpener         = (*passNode)(nil)
	_ gofs.NodeCreater        = (*passNode)(nil)
	_ gofs.NodeMkdirer        = (*passNode)(nil)
	_ gofs.NodeMknoder        = (*passNode)(nil)
	_ gofs.NodeSymlinker      = (*passNode)(nil)
	_ gofs.NodeLinker         = (*passNode)(nil)
	_ gofs.NodeReadlinker     = (*passNode)(nil)
	_ gofs.NodeUnlinker       = (*passNode)(nil)
	_ gofs.NodeRmdirer        = (*passNode)(nil)
	_ gofs.NodeRenamer        = (*passNode)(nil)
	_ gofs.NodeGetxattrer     = (*passNode)(nil)
	_ gofs.NodeSetxattrer     = (*passNode)(nil)
	_ gofs.NodeRemovexattrer  = (*passNode)(nil)
	_ gofs.NodeListxattrer    = (*passNode)(nil)
	_ gofs.NodeCopyFileRanger = (*passNode)(nil)
	_ gofs.NodeWrapChilder    = (*passNode)(nil)
)

// newPassDir makes the top node of a read-only passthrough to the directory at path (an
// image's layer or view). The inode numbers under it are the real ones mixed with key's
// hash: go-fuse keeps one node per inode number, and one real file can show in several
// places (a layer two images share, the rootfs/ of a one-layer image).
func (t *tree) newPassDir(path, key string, prepare func(ctx context.Context) error) *passNode {
	return newPassTop(&passDir{t: t, ro: true, prepare: prepare}, path, key)
}

// newRootfsDir makes the top node of container id's rootfs/, read-write, in its jail.
func (t *tree) newRootfsDir(id, key string) *passNode {
	st := t.rootfs.get(id, filepath.Dir(t.eng.Images().RootfsPath(id)))
	d := &passDir{t: t, state: st, prepare: func(ctx context.Context) error {
		_, err := t.eng.Rootfs(ctx, id)
		return err
	}}
	return newPassTop(d, "/merged", key)
}

func newPassTop(d *passDir, path, key string) *passNode {
	root := &gofs.LoopbackRoot{Path: path, Dev: ino(key) &^ (1 << 63)}
	n := &passNode{LoopbackNode: gofs.LoopbackNode{RootData: root}, d: d, top: true}
	root.RootNode = n
	return n
}

// WrapChild makes every node under the top a passNode of the same directory.
func (n *passNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if lb, ok := ops.(*gofs.LoopbackNode); ok {
		return &passNode{LoopbackNode: gofs.LoopbackNode{RootData: lb.RootData}, d: n.d}
	}
	return ops
}

// in runs f where the directory's paths mean what they should: in the directory's
// jail, or here.
// A container's rootfs is mounted first if it is not: a name the kernel still knows
// from before the container stopped leads into it as well as the top does.
func (n *passNode) in(ctx context.Context, f func()) syscall.Errno {
	if n.d.state != nil {
		if errno := n.ensure(ctx); errno != 0 {
			return errno
		}
	}
	return n.d.in(ctx, f)
}

func (d *passDir) in(ctx context.Context, f func()) syscall.Errno {
	if d.state == nil {
		f()
		return 0
	}
	j, err := d.state.jail()
	if err != nil {
		return toErrno(err)
	}
	return j.run(ctx, f)
}

// ensure prepares the real directory if it is not ready: a container's rootfs from any
// of its nodes, an image's directory from its top.
func (n *passNode) ensure(ctx context.Context) syscall.Errno {
	if n.d.prepare == nil || (n.d.state != nil && n.d.state.ready.Load()) || (n.d.state == nil && !n.top) {
		return 0
	}
	if err := n.d.prepare(ctx); err != nil {
		return toErrno(err)
	}
	if n.d.state != nil {
		n.d.state.ready.Store(true)
	}
	return 0
}

// unready tells that this is the top of a container's rootfs that is not mounted now.
func (n *passNode) unready() bool {
	return n.top && n.d.state != nil && !n.d.state.ready.Load()
}

func (n *passNode) Statfs(ctx context.Context, out *fuse.StatfsOut) (errno syscall.Errno) {
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Statfs(ctx, out) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	if e := n.in(ctx, func() { ch, errno = n.LoopbackNode.Lookup(ctx, name, out) }); e != 0 {
		return nil, e
	}
	return ch, errno
}

func (n *passNode) OpendirHandle(ctx context.Context, flags uint32) (fh gofs.FileHandle, fl uint32, errno syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, 0, errno
	}
	if e := n.in(ctx, func() { fh, fl, errno = n.LoopbackNode.OpendirHandle(ctx, flags) }); e != 0 {
		return nil, 0, e
	}
	return fh, fl, errno
}

func (n *passNode) Readdir(ctx context.Context) (ds gofs.DirStream, errno syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	if e := n.in(ctx, func() { ds, errno = n.LoopbackNode.Readdir(ctx) }); e != 0 {
		return nil, e
	}
	return ds, errno
}

// Getattr of the top of a container's rootfs does not mount it: ls -l of a container's
// directory shows its rootfs/ without mounting it.
func (n *passNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	if n.unready() {
		n.d.t.attr(&out.Attr, syscall.S_IFDIR|0o755, 4096, time.Time{})
		out.Uid, out.Gid = 0, 0
		out.SetTimeout(stableTimeout)
		return 0
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Getattr(ctx, fh, out) }); e != 0 {
		return e
	}
	if n.top {
		out.Ino = n.StableAttr().Ino
	}
	return errno
}

func (n *passNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFLNK {
		// go-fuse changes modes and sizes by path, which follows a link.
		_, mode := in.GetMode()
		_, size := in.GetSize()
		if mode || size {
			return syscall.EPERM
		}
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Setattr(ctx, fh, in, out) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, fl uint32, errno syscall.Errno) {
	if n.d.ro {
		return nil, nil, 0, syscall.EROFS
	}
	// The kernel asks to create a name it knows as absent; O_EXCL and O_NOFOLLOW keep a
	// name a container made meanwhile (a device node, a symbolic link) from being opened.
	flags |= syscall.O_EXCL | syscall.O_NOFOLLOW
	if e := n.in(ctx, func() { ch, fh, fl, errno = n.LoopbackNode.Create(ctx, name, flags, mode, out) }); e != 0 {
		return nil, nil, 0, e
	}
	return ch, fh, fl, errno
}

func (n *passNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if n.d.ro {
		return nil, syscall.EROFS
	}
	if e := n.in(ctx, func() { ch, errno = n.LoopbackNode.Mkdir(ctx, name, mode, out) }); e != 0 {
		return nil, e
	}
	return ch, errno
}

func (n *passNode) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if n.d.ro {
		return nil, syscall.EROFS
	}
	if e := n.in(ctx, func() { ch, errno = n.LoopbackNode.Mknod(ctx, name, mode, rdev, out) }); e != 0 {
		return nil, e
	}
	return ch, errno
}

func (n *passNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if n.d.ro {
		return nil, syscall.EROFS
	}
	if e := n.in(ctx, func() { ch, errno = n.LoopbackNode.Symlink(ctx, target, name, out) }); e != 0 {
		return nil, e
	}
	return ch, errno
}

func (n *passNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if n.d.ro {
		return nil, syscall.EROFS
	}
	p, ok := target.(*passNode)
	if !ok {
		return nil, syscall.EXDEV
	}
	return n.linkTo(ctx, p, name, out)
}

// linkTo makes name a hard link to target, of the same directory.
func (n *passNode) linkTo(ctx context.Context, target *passNode, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if target.d != n.d {
		return nil, syscall.EXDEV
	}
	if e := n.in(ctx, func() { ch, errno = n.LoopbackNode.Link(ctx, &target.LoopbackNode, name, out) }); e != 0 {
		return nil, e
	}
	return ch, errno
}

func (n *passNode) Readlink(ctx context.Context) (b []byte, errno syscall.Errno) {
	if e := n.in(ctx, func() { b, errno = n.LoopbackNode.Readlink(ctx) }); e != 0 {
		return nil, e
	}
	return b, errno
}

func (n *passNode) Unlink(ctx context.Context, name string) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Unlink(ctx, name) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Rmdir(ctx context.Context, name string) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Rmdir(ctx, name) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	p, ok := newParent.(*passNode)
	if !ok || p.d != n.d {
		return syscall.EXDEV
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Rename(ctx, name, &p.LoopbackNode, newName, flags) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Getxattr(ctx context.Context, attr string, dest []byte) (size uint32, errno syscall.Errno) {
	if e := n.in(ctx, func() { size, errno = n.LoopbackNode.Getxattr(ctx, attr, dest) }); e != 0 {
		return 0, e
	}
	return size, errno
}

func (n *passNode) Listxattr(ctx context.Context, dest []byte) (size uint32, errno syscall.Errno) {
	if e := n.in(ctx, func() { size, errno = n.LoopbackNode.Listxattr(ctx, dest) }); e != 0 {
		return 0, e
	}
	return size, errno
}

func (n *passNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Setxattr(ctx, attr, data, flags) }); e != 0 {
		return e
	}
	return errno
}

func (n *passNode) Removexattr(ctx context.Context, attr string) (errno syscall.Errno) {
	if n.d.ro {
		return syscall.EROFS
	}
	if e := n.in(ctx, func() { errno = n.LoopbackNode.Removexattr(ctx, attr) }); e != 0 {
		return e
	}
	return errno
}

// CopyFileRange works on open files: their descriptors, not paths.
func (n *passNode) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if n.d.ro {
		return 0, syscall.EROFS
	}
	return n.LoopbackNode.CopyFileRange(ctx, fhIn, offIn, out, fhOut, offOut, length, flags)
}

// rootfsState is what the tree keeps of a container's rootfs/: whether it mounted it
// (the engine's events reset that when the container stops), and its jail.
type rootfsState struct {
	ready atomic.Bool
	// dir is the container's storage directory, the root of its jail.
	dir string

	mu sync.Mutex
	j  *jail
}

// jail returns the rootfs's jail, starting it the first time.
func (s *rootfsState) jail() (*jail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j == nil {
		j, err := newJail(s.dir)
		if err != nil {
			return nil, err
		}
		s.j = j
	}
	return s.j, nil
}

// close ends the jail.
func (s *rootfsState) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.j.close()
	s.j = nil
}

// rootfsStates are the rootfsStates of the containers, by ID.
type rootfsStates struct{ m sync.Map }

func (r *rootfsStates) get(id, dir string) *rootfsState {
	if v, ok := r.m.Load(id); ok {
		return v.(*rootfsState)
	}
	v, _ := r.m.LoadOrStore(id, &rootfsState{dir: dir})
	return v.(*rootfsState)
}

// reset marks container id's rootfs/ as to be mounted again, and ends its jail (a thread
// each; the next look starts another): the container stopped.
func (r *rootfsStates) reset(id string) {
	if v, ok := r.m.Load(id); ok {
		s := v.(*rootfsState)
		s.ready.Store(false)
		s.mu.Lock()
		s.j.close()
		s.j = nil
		s.mu.Unlock()
	}
}

// forget drops container id's state and ends its jail: the container went.
func (r *rootfsStates) forget(id string) {
	if v, ok := r.m.LoadAndDelete(id); ok {
		s := v.(*rootfsState)
		s.mu.Lock()
		s.j.close()
		s.mu.Unlock()
	}
}

// close ends every jail.
func (r *rootfsStates) close() {
	r.m.Range(func(k, _ any) bool {
		r.forget(k.(string))
		return true
	})
}

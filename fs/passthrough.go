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
// (with the kernel's FUSE passthrough for file data): a volume's data and a container's
// rootfs/, read-write, and an image's layers and rootfs/, read-only. Owners, modes and
// times are the real ones, so that cp -a, rsync and tar copy them faithfully.
//
// Containers change their rootfs and volumes under the tree: one can swap a directory
// for a symbolic link to / between a lookup and the operation after it. So every path is
// resolved inside the directory's root, as if it were / (openat2 with RESOLVE_IN_ROOT, on
// Linux), and the operations act on the last name with the *at calls that do not follow
// it: no path leads the daemon, which runs as root, out of the directory (a container's
// rootfs, merged/ in its storage directory; a volume's _data/). Image layers and views
// never change once made, and are resolved from the host's root.
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
	// state, which remembers that it did until the container stops, and its root; an
	// image's directories are prepared on every look at the top.
	prepare func(ctx context.Context) error
	state   *rootfsState
	// overlay tells that the directory is an overlay (a container's rootfs), whose
	// copy-up gives a file a new birth time: its nodes take no generation from it.
	overlay bool
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

// newRootfsDir makes the top node of container id's rootfs/, read-write, resolved inside
// merged/ of its storage directory.
func (t *tree) newRootfsDir(id, key string) *passNode {
	rootfs := t.eng.Images().RootfsPath(id)
	st := t.rootfs.get(id, filepath.Dir(rootfs), filepath.Base(rootfs))
	d := &passDir{t: t, state: st, overlay: true, prepare: func(ctx context.Context) error {
		_, err := t.eng.Rootfs(ctx, id)
		return err
	}}
	return newPassTop(d, "/", key)
}

func newPassTop(d *passDir, path, key string) *passNode {
	root := &gofs.LoopbackRoot{Path: d.rootPath(path), Dev: ino(key) &^ (1 << 63)}
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

// in runs f in the directory's jail (the backing directory's, where the spec loader
// reads), or here.
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
// of its nodes (a name the kernel still knows from before the container stopped leads
// into it as well as the top does), an image's directory from its top.
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

// writable refuses changes to a read-only directory.
func (n *passNode) writable() syscall.Errno {
	if n.d.ro {
		return syscall.EROFS
	}
	return 0
}

// The operations make the directory ready, refuse changes to a read-only one, and leave
// the rest to the system's implementation (passthrough_linux.go).

func (n *passNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.statfs(ctx, out)
}

func (n *passNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.lookup(ctx, name, out)
}

func (n *passNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, 0, errno
	}
	ds, errno := n.readdir(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	return ds.(gofs.FileHandle), 0, 0
}

func (n *passNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.readdir(ctx)
}

// Getattr of the top of a container's rootfs does not mount it: ls -l of a container's
// directory shows its rootfs/ without mounting it.
func (n *passNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.unready() {
		n.d.t.attr(&out.Attr, syscall.S_IFDIR|0o755, 4096, time.Time{})
		out.Uid, out.Gid = 0, 0
		out.SetTimeout(stableTimeout)
		return 0
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	if errno := n.getattr(ctx, fh, out); errno != 0 {
		return errno
	}
	out.Ino = n.StableAttr().Ino
	return 0
}

func (n *passNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	if errno := n.setattr(ctx, fh, in, out); errno != 0 {
		return errno
	}
	out.Ino = n.StableAttr().Ino
	return 0
}

func (n *passNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.d.ro && flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EPERM
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, 0, errno
	}
	fh, errno := n.open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return fh, n.d.openFlags(), 0
}

func (n *passNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, nil, 0, errno
	}
	ch, fh, errno := n.create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, n.d.openFlags(), 0
}

// openFlags are the flags of the files the directory opens: the tree's backing
// directory sees every close (a spec is applied when it is closed); the others do not
// need to, and the kernel then spares a round trip to the daemon on every close.
func (d *passDir) openFlags() uint32 {
	if d == d.t.backingDir {
		return 0
	}
	return fuse.FOPEN_NOFLUSH
}

func (n *passNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.mkdir(ctx, name, mode, out)
}

// Mknod: the kernel lets only a caller with CAP_MKNOD ask for a device.
func (n *passNode) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.mknod(ctx, name, mode, rdev, out)
}

func (n *passNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.symlink(ctx, target, name, out)
}

func (n *passNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p, ok := target.(*passNode)
	if !ok {
		return nil, syscall.EXDEV
	}
	return n.linkTo(ctx, p, name, out)
}

// linkTo makes name a hard link to target, of the same directory.
func (n *passNode) linkTo(ctx context.Context, target *passNode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.writable(); errno != 0 {
		return nil, errno
	}
	if target.d != n.d {
		return nil, syscall.EXDEV
	}
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.link(ctx, target, name, out)
}

func (n *passNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return nil, errno
	}
	return n.readlink(ctx)
}

func (n *passNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.unlink(ctx, name, false)
}

func (n *passNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.unlink(ctx, name, true)
}

func (n *passNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	p, ok := newParent.(*passNode)
	if !ok || p.d != n.d {
		return syscall.EXDEV
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.rename(ctx, name, p, newName, flags)
}

func (n *passNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return 0, errno
	}
	return n.getxattr(ctx, attr, dest)
}

func (n *passNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if errno := n.ensure(ctx); errno != 0 {
		return 0, errno
	}
	return n.listxattr(ctx, dest)
}

func (n *passNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.setxattr(ctx, attr, data, flags)
}

func (n *passNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if errno := n.writable(); errno != 0 {
		return errno
	}
	if errno := n.ensure(ctx); errno != 0 {
		return errno
	}
	return n.removexattr(ctx, attr)
}

// CopyFileRange works on open files: their descriptors, not paths.
func (n *passNode) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if n.d.ro {
		return 0, syscall.EROFS
	}
	return n.LoopbackNode.CopyFileRange(ctx, fhIn, offIn, out, fhOut, offOut, length, flags)
}

// rootfsState is what the tree keeps of a directory it serves read-write (a container's
// rootfs, a volume, the tree's backing directory): whether it is ready (the engine's
// events reset that when a container stops), and its root.
type rootfsState struct {
	ready atomic.Bool
	// dir is a directory of the daemon's own, and sub the name in it of the directory
	// served ("merged", a container's rootfs; "_data", a volume's; "" for dir itself),
	// under which its paths resolve as under /.
	dir, sub string

	// rootMu guards root, the directory dir opened once (or -1), and closed, which
	// tells that the directory is gone.
	rootMu sync.RWMutex
	root   int
	closed bool

	mu sync.Mutex
	// j is the jail the spec loader reads the backing directory in.
	j *jail
}

func newRootfsState(dir, sub string) *rootfsState {
	return &rootfsState{dir: dir, sub: sub, root: -1}
}

// jail returns the directory's jail, starting it the first time.
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

// close ends the jail and closes the root, for good.
func (s *rootfsState) close() {
	s.mu.Lock()
	s.j.close()
	s.j = nil
	s.mu.Unlock()
	s.rootMu.Lock()
	if s.root >= 0 {
		syscall.Close(s.root)
		s.root = -1
	}
	s.closed = true
	s.rootMu.Unlock()
}

// rootfsStates are the rootfsStates of the containers, by ID.
type rootfsStates struct{ m sync.Map }

func (r *rootfsStates) get(id, dir, sub string) *rootfsState {
	if v, ok := r.m.Load(id); ok {
		return v.(*rootfsState)
	}
	v, _ := r.m.LoadOrStore(id, newRootfsState(dir, sub))
	return v.(*rootfsState)
}

// reset marks container id's rootfs/ as to be mounted again: the container stopped.
func (r *rootfsStates) reset(id string) {
	if v, ok := r.m.Load(id); ok {
		v.(*rootfsState).ready.Store(false)
	}
}

// forget drops container id's state and closes its root: the container went.
func (r *rootfsStates) forget(id string) {
	if v, ok := r.m.LoadAndDelete(id); ok {
		v.(*rootfsState).close()
	}
}

// close closes every root.
func (r *rootfsStates) close() {
	r.m.Range(func(k, _ any) bool {
		r.forget(k.(string))
		return true
	})
}

package fs

import (
	"context"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// backedDir is a directory of the tree that holds, beside what the engine shows in it,
// files people write: container specs, and the scratch files editors and file managers
// make (swap files, backups, .DS_Store, .Trash-1000/). Those are real files in a backing
// directory under the data root, served as a loopback in a jail (a passNode, which this
// embeds for every operation it does not override). The engine's names come first: a
// file cannot take the name of a container or of one of the tree's own files.
type backedDir struct {
	passNode
	t    *tree
	perm uint32
	// virtual lists the engine's entries; find looks one up.
	virtual func(ctx context.Context) ([]entry, error)
	find    func(ctx context.Context, name string) (entry, bool, error)
	// specs tells that this is containers/, whose *.yaml files are container specs.
	specs bool
}

var (
	_ gofs.NodeLookuper       = (*backedDir)(nil)
	_ gofs.NodeOpendirHandler = (*backedDir)(nil)
	_ gofs.NodeCreater        = (*backedDir)(nil)
	_ gofs.NodeRenamer        = (*backedDir)(nil)
	_ gofs.NodeWrapChilder    = (*backedDir)(nil)
	_ gofs.NodeOpener         = (*backedFile)(nil)
	_ gofs.NodeWrapChilder    = (*backedFile)(nil)
	_ gofs.NodeRenamer        = (*backedFile)(nil)
	_ gofs.FileFlusher        = (*specHandle)(nil)
	_ gofs.FileWriter         = (*specHandle)(nil)
)

// newBackedDir makes a backed directory. root is the loopback root shared by every
// backed directory, so that files move between them with rename.
func (t *tree) newBackedDir(root *gofs.LoopbackRoot, specs bool, virtual func(ctx context.Context) ([]entry, error),
	find func(ctx context.Context, name string) (entry, bool, error)) *backedDir {
	d := &backedDir{t: t, perm: 0o755, virtual: virtual, find: find, specs: specs}
	d.RootData = root
	d.d = t.backingDir
	return d
}

// jailPath is where a backed node is in the backing directory (its root, and its jail).
func jailPath(n *gofs.LoopbackNode) string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

// Getattr shows the directory as the tree's owner's.
func (d *backedDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.t.attr(&out.Attr, syscall.S_IFDIR|d.perm, 4096, time.Time{})
	out.SetTimeout(stableTimeout)
	return 0
}

// Setattr accepts what cp -a and rsync set on a directory they copy into, and keeps
// nothing: the directory's mode and owner are the tree's.
func (d *backedDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return d.Getattr(ctx, fh, out)
}

func (d *backedDir) lookupVirtual(ctx context.Context, name string) (entry, bool, syscall.Errno) {
	e, ok, err := d.find(ctx, name)
	if err != nil {
		return entry{}, false, toErrno(err)
	}
	return e, ok, 0
}

func (d *backedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, ok, errno := d.lookupVirtual(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	if ok {
		return d.t.newChild(ctx, &d.Inode, e, out)
	}
	return d.passNode.Lookup(ctx, name, out)
}

// OpendirHandle lists the engine's entries, then the files of the backing directory.
func (d *backedDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	es, err := d.virtual(ctx)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	taken := make(map[string]bool, len(es))
	for _, e := range es {
		taken[e.name] = true
	}
	all, err := d.d.list(jailPath(&d.LoopbackNode), d.RootData)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	files := all[:0]
	for _, f := range all {
		if !taken[f.Name] {
			files = append(files, f)
		}
	}
	list := append(listing(&d.Inode, es, len(files)), files...)
	return gofs.NewListDirStream(list).(gofs.FileHandle), 0, 0
}

// backedIno is the inode number go-fuse's loopback gives the file st describes.
func backedIno(root *gofs.LoopbackRoot, st *syscall.Stat_t) uint64 {
	swap := func(d uint64) uint64 { return d<<32 | d>>32 }
	return swap(uint64(st.Dev)) ^ swap(root.Dev) ^ st.Ino
}

// taken refuses to make a file under a name the engine uses here, or one that would be a
// spec for an invalid container name.
func (d *backedDir) taken(ctx context.Context, name string) syscall.Errno {
	if d.specs {
		if err := checkSpecName(name); err != nil {
			d.t.eng.ReportError(name, err)
			return toErrno(err)
		}
	}
	return d.refuseVirtual(ctx, name, syscall.EEXIST)
}

// virtualOnly refuses to remove or rename what the engine shows.
func (d *backedDir) virtualOnly(ctx context.Context, name string) syscall.Errno {
	return d.refuseVirtual(ctx, name, syscall.EPERM)
}

// refuseVirtual answers errno if name is one of the engine's entries.
func (d *backedDir) refuseVirtual(ctx context.Context, name string, errno syscall.Errno) syscall.Errno {
	_, ok, e := d.lookupVirtual(ctx, name)
	if e != 0 {
		return e
	}
	if ok {
		return errno
	}
	return 0
}

func (d *backedDir) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := d.taken(ctx, name); errno != 0 {
		return nil, nil, 0, errno
	}
	ch, fh, fl, errno := d.passNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if d.specs && isSpecName(name) {
		d.t.specs.cancelRemoval(specContainer(name))
		fh = &specHandle{FileHandle: fh, t: d.t, name: name, dirty: true}
	}
	return ch, fh, fl, 0
}

func (d *backedDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.taken(ctx, name); errno != 0 {
		return nil, errno
	}
	return d.passNode.Mkdir(ctx, name, mode, out)
}

// scratchKind tells whether mode is a kind of file the tree's own directories hold:
// regular files and sockets. Not devices, and not FIFOs: the daemon reads files of the
// tree as root (spec files, compose files, env files), and an open of a FIFO would block
// it until someone writes.
func scratchKind(mode uint32) bool {
	return mode&syscall.S_IFMT == syscall.S_IFREG || mode&syscall.S_IFMT == syscall.S_IFSOCK
}

// Mknod makes only what scratch files may be.
func (d *backedDir) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !scratchKind(mode) {
		return nil, syscall.EPERM
	}
	if errno := d.taken(ctx, name); errno != 0 {
		return nil, errno
	}
	return d.passNode.Mknod(ctx, name, mode, rdev, out)
}

func (d *backedDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.taken(ctx, name); errno != 0 {
		return nil, errno
	}
	return d.passNode.Symlink(ctx, target, name, out)
}

func (d *backedDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.taken(ctx, name); errno != 0 {
		return nil, errno
	}
	if d.specs && isSpecName(name) {
		return nil, syscall.EPERM // a spec is a file of its own
	}
	f, ok := target.(*backedFile)
	if !ok {
		return nil, syscall.EXDEV
	}
	return d.linkTo(ctx, &f.passNode, name, out)
}

func (d *backedDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := d.virtualOnly(ctx, name); errno != 0 {
		return errno
	}
	if errno := d.passNode.Unlink(ctx, name); errno != 0 {
		return errno
	}
	if d.specs && isSpecName(name) {
		d.t.specs.removed(name)
	}
	return 0
}

func (d *backedDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.virtualOnly(ctx, name); errno != 0 {
		return errno
	}
	return d.passNode.Rmdir(ctx, name)
}

// Rename moves files of the backing directories. A spec that arrives under its name is
// applied (an editor's atomic save), one that leaves it is removed after the grace
// period (unless it comes back: editors rename the old file away before writing).
func (d *backedDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.virtualOnly(ctx, name); errno != 0 {
		return errno
	}
	if errno := d.t.renameBacked(ctx, d, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if d.specs && isSpecName(name) {
		to, _ := newParent.(*backedDir)
		if to != d || specContainer(newName) != specContainer(name) || !isSpecName(newName) {
			d.t.specs.removed(name)
		}
	}
	return 0
}

// Rename moves a file out of a subdirectory (from .Trash-1000/ back to containers/).
func (f *backedFile) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return f.t.renameBacked(ctx, f, name, newParent, newName, flags)
}

// renameBacked renames name in backed directory from to newName in newParent, and
// applies a spec that arrives in containers/. The loopback's own rename checks the
// parents' inode numbers against the backing directories', which the tree numbers its
// own way: this renames the paths.
func (t *tree) renameBacked(ctx context.Context, from gofs.InodeEmbedder, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to, _ := newParent.(*backedDir)
	if to != nil {
		if errno := to.taken(ctx, newName); errno != 0 {
			return errno
		}
	}
	fromDir, ok := jailPathOf(from)
	toDir, ok2 := jailPathOf(newParent)
	if !ok || !ok2 {
		return syscall.EXDEV
	}
	spec := to != nil && to.specs && isSpecName(newName)
	if fd, ok := from.(*backedDir); flags&unixRenameExchange != 0 && (spec || ok && fd.specs && isSpecName(name)) {
		return syscall.EINVAL // a swap would put a file in a spec's place unchecked
	}
	if spec {
		// An invalid spec does not take the place of the one in use: the rename is
		// refused, and the file stays where it was.
		if errno := t.specs.check(ctx, filepath.Join(fromDir, name), newName); errno != 0 {
			return errno
		}
	}
	if errno := t.backingDir.renameIn(fromDir, name, toDir, newName, flags); errno != 0 {
		return errno
	}
	if spec {
		// Applied in the background: the kernel holds the directory while a rename
		// runs, and applying may pull an image. What fails is in error and events.
		t.specs.saveLater(newName)
	}
	return 0
}

// jailPathOf is where a backed directory of the tree is in the backing jail.
func jailPathOf(n gofs.InodeEmbedder) (string, bool) {
	switch n := n.(type) {
	case *backedDir:
		return jailPath(&n.LoopbackNode), true
	case *backedFile:
		return jailPath(&n.LoopbackNode), true
	}
	return "", false
}

// WrapChild makes the node of every file of the backing directories.
func (d *backedDir) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return d.t.wrapBacked(ops)
}

func (t *tree) wrapBacked(ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if lb, ok := ops.(*gofs.LoopbackNode); ok {
		return &backedFile{passNode: passNode{LoopbackNode: gofs.LoopbackNode{RootData: lb.RootData}, d: t.backingDir}, t: t}
	}
	return ops
}

// backedFile is a file (or directory) of a backing directory, served in its jail.
type backedFile struct {
	passNode
	t *tree
}

func (f *backedFile) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*backedFile)
	if !ok {
		return nil, syscall.EXDEV
	}
	return f.linkTo(ctx, &t.passNode, name, out)
}

// Mknod in a subdirectory makes only what scratch files may be, as in the tree's own
// directories.
func (f *backedFile) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !scratchKind(mode) {
		return nil, syscall.EPERM
	}
	return f.passNode.Mknod(ctx, name, mode, rdev, out)
}

func (f *backedFile) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return f.t.wrapBacked(ops)
}

// Open of a spec for writing applies it when the file is closed.
func (f *backedFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := f.passNode.Open(ctx, flags)
	if errno != 0 || flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0 {
		return fh, fl, errno
	}
	name, parent := f.Parent()
	if pd, ok := parent.Operations().(*backedDir); ok && pd.specs && isSpecName(name) {
		return &specHandle{FileHandle: fh, t: f.t, name: name, dirty: flags&syscall.O_TRUNC != 0}, fl, 0
	}
	return fh, fl, 0
}

// specHandle is a spec file open for writing: closing it after a change applies it, and
// the close fails (EINVAL) if the spec is invalid. The file keeps what was written
// either way. Spec files are small: their reads and writes go through the daemon, with no
// passthrough, so that it sees every change.
type specHandle struct {
	gofs.FileHandle
	t     *tree
	name  string
	dirty bool
}

func (h *specHandle) PassthroughFd() (int, bool) { return 0, false }

func (h *specHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.FileHandle.(gofs.FileReader).Read(ctx, dest, off)
}

func (h *specHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.dirty = true
	return h.FileHandle.(gofs.FileWriter).Write(ctx, data, off)
}

func (h *specHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.FileHandle.(gofs.FileFsyncer).Fsync(ctx, flags)
}

func (h *specHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.FileHandle.(gofs.FileGetattrer).Getattr(ctx, out)
}

func (h *specHandle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok {
		h.dirty = true
	}
	return h.FileHandle.(gofs.FileSetattrer).Setattr(ctx, in, out)
}

func (h *specHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.FileHandle.(gofs.FileLseeker).Lseek(ctx, off, whence)
}

func (h *specHandle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	h.dirty = true
	return h.FileHandle.(gofs.FileAllocater).Allocate(ctx, off, size, mode)
}

func (h *specHandle) Release(ctx context.Context) syscall.Errno {
	return h.FileHandle.(gofs.FileReleaser).Release(ctx)
}

// Flush (every close) applies the spec if it changed since the last close.
func (h *specHandle) Flush(ctx context.Context) syscall.Errno {
	if errno := h.FileHandle.(gofs.FileFlusher).Flush(ctx); errno != 0 {
		return errno
	}
	if !h.dirty {
		return 0
	}
	h.dirty = false
	return h.t.specs.saved(ctx, h.name)
}

//go:build !linux

package fs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The operations of a passthrough directory elsewhere than on Linux: go-fuse's loopback,
// by path, unconfined. A port must confine them (as openat2 does on Linux) before it
// serves directories that others can change.

func (n *passNode) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.LoopbackNode.Statfs(ctx, out)
}

func (n *passNode) lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *passNode) readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return n.LoopbackNode.Readdir(ctx)
}

func (n *passNode) getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.LoopbackNode.Getattr(ctx, fh, out)
}

func (n *passNode) setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFLNK {
		// go-fuse changes modes and sizes by path, which follows a link.
		_, mode := in.GetMode()
		_, size := in.GetSize()
		if mode || size {
			return syscall.EPERM
		}
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *passNode) open(ctx context.Context, flags uint32) (gofs.FileHandle, syscall.Errno) {
	fh, _, errno := n.LoopbackNode.Open(ctx, flags|syscall.O_NOFOLLOW)
	return fh, errno
}

func (n *passNode) create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, syscall.Errno) {
	ch, fh, _, errno := n.LoopbackNode.Create(ctx, name, flags|syscall.O_EXCL|syscall.O_NOFOLLOW, mode, out)
	return ch, fh, errno
}

func (n *passNode) mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *passNode) mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *passNode) symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *passNode) link(ctx context.Context, target *passNode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.LoopbackNode.Link(ctx, &target.LoopbackNode, name, out)
}

func (n *passNode) readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return n.LoopbackNode.Readlink(ctx)
}

func (n *passNode) unlink(ctx context.Context, name string, dir bool) syscall.Errno {
	if dir {
		return n.LoopbackNode.Rmdir(ctx, name)
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *passNode) rename(ctx context.Context, name string, newParent *passNode, newName string, flags uint32) syscall.Errno {
	return n.LoopbackNode.Rename(ctx, name, &newParent.LoopbackNode, newName, flags)
}

func (n *passNode) getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *passNode) listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return n.LoopbackNode.Listxattr(ctx, dest)
}

func (n *passNode) setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *passNode) removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.LoopbackNode.Removexattr(ctx, attr)
}

// rootPath is the host path of the top of a directory whose paths are path (absolute in
// its root): go-fuse's loopback resolves from the host's root.
func (d *passDir) rootPath(path string) string { return d.hostPath(path) }

// hostPath is where path of d is on the host.
func (d *passDir) hostPath(path string) string {
	if d.state == nil {
		return path
	}
	return filepath.Join(d.state.dir, d.state.sub, path)
}

func (d *passDir) renameIn(from, name, to, newName string, flags uint32) syscall.Errno {
	return gofs.ToErrno(renameFlags(filepath.Join(from, name), filepath.Join(to, newName), flags))
}

func (d *passDir) list(path string, root *gofs.LoopbackRoot) ([]fuse.DirEntry, error) {
	dir := path
	ds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []fuse.DirEntry
	for _, f := range ds {
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(dir, f.Name()), &st) != nil {
			continue
		}
		out = append(out, fuse.DirEntry{Name: f.Name(), Mode: uint32(st.Mode), Ino: backedIno(root, &st)})
	}
	return out, nil
}

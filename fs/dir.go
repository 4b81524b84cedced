package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// entry is one name in a directory of the tree.
type entry struct {
	name string
	// mode is the file type and permissions.
	mode uint32
	// key names the object for its inode number: the same key, the same inode.
	key string
	// timeout is how long the kernel may cache the name and its attributes.
	timeout time.Duration
	// node makes the node that serves the name.
	node func() gofs.InodeEmbedder
}

// dirNode is a directory whose entries the engine's memory gives: it reads them on every
// listing and lookup and never caches them itself.
type dirNode struct {
	virtualNode
	perm uint32
	// entries lists the directory.
	entries func(ctx context.Context) ([]entry, error)
	// find looks one name up; without it, Lookup searches entries.
	find func(ctx context.Context, name string) (entry, bool, error)
}

var (
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
)

// Unlink refuses: the engine's files go with what they show. (Without it, go-fuse
// reports success and removes nothing.)
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

// Rmdir refuses, as Unlink does.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.t.attr(&out.Attr, syscall.S_IFDIR|d.perm, 4096, time.Time{})
	out.SetTimeout(stableTimeout)
	return 0
}

func (d *dirNode) lookupEntry(ctx context.Context, name string) (entry, bool, error) {
	if d.find != nil {
		return d.find(ctx, name)
	}
	es, err := d.entries(ctx)
	if err != nil {
		return entry{}, false, err
	}
	for _, e := range es {
		if e.name == name {
			return e, true, nil
		}
	}
	return entry{}, false, nil
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, ok, err := d.lookupEntry(ctx, name)
	if err != nil {
		return nil, toErrno(err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.t.newChild(ctx, &d.Inode, e, out)
}

// newChild makes the inode for e under parent and fills out the lookup answer.
func (t *tree) newChild(ctx context.Context, parent *gofs.Inode, e entry, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := parent.NewInode(ctx, e.node(), gofs.StableAttr{Mode: e.mode & syscall.S_IFMT, Ino: ino(e.key)})
	if ga, ok := ch.Operations().(gofs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
		out.SetAttrTimeout(a.Timeout())
	}
	out.SetEntryTimeout(e.timeout)
	return ch, 0
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	es, err := d.entries(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	return gofs.NewListDirStream(listing(&d.Inode, es, 0)), 0
}

// value makes the entry of a valueFile.
func (t *tree) value(name, key string, render func(ctx context.Context) ([]byte, error)) entry {
	return t.valueOf(valueLive, name, key, render)
}

// valueOf makes the entry of a valueFile of the given kind.
func (t *tree) valueOf(kind valueKind, name, key string, render func(ctx context.Context) ([]byte, error)) entry {
	return entry{name: name, mode: syscall.S_IFREG | 0o444, key: key, timeout: stableTimeout,
		node: func() gofs.InodeEmbedder {
			f := &valueFile{virtualNode: virtualNode{t: t}, render: render, kind: kind}
			f.size.Store(-1)
			return f
		}}
}

// stream makes the entry of a streamFile.
func (t *tree) stream(name, key string, path func() (string, error)) entry {
	return entry{name: name, mode: syscall.S_IFREG | 0o444, key: key, timeout: stableTimeout,
		node: func() gofs.InodeEmbedder { return &streamFile{virtualNode: virtualNode{t: t}, path: path} }}
}

// dir makes the entry of a dirNode.
func (t *tree) dir(name, key string, timeout time.Duration, d func() *dirNode) entry {
	return entry{name: name, mode: syscall.S_IFDIR | 0o555, key: key, timeout: timeout,
		node: func() gofs.InodeEmbedder { return d() }}
}

// line ends a one-line value with a newline, as sysfs does; an empty value is empty.
func line(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s + "\n")
}

// listing lists directory dir: "." and "..", then es, with room for extra more.
func listing(dir *gofs.Inode, es []entry, extra int) []fuse.DirEntry {
	self := dir.StableAttr().Ino
	parent := self
	if _, p := dir.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	list := make([]fuse.DirEntry, 0, len(es)+2+extra)
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: self},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parent})
	for _, e := range es {
		list = append(list, fuse.DirEntry{Name: e.name, Mode: e.mode, Ino: ino(e.key)})
	}
	return list
}

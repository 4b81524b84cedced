package fs

import (
	"context"
	"sort"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// virtualNode is what every node the engine's memory serves (not the backing files)
// shares: the tree, and extended attributes. File managers and editors set attributes
// (user.xdg.origin.url, user.com.apple.*) on what they touch; a tree file keeps them in
// the daemon's memory, for as long as the daemon runs.
type virtualNode struct {
	gofs.Inode
	t *tree
}

var (
	_ gofs.NodeGetxattrer    = (*virtualNode)(nil)
	_ gofs.NodeSetxattrer    = (*virtualNode)(nil)
	_ gofs.NodeListxattrer   = (*virtualNode)(nil)
	_ gofs.NodeRemovexattrer = (*virtualNode)(nil)
)

// Limits of the attributes of one file, as ext4's (one block).
const (
	maxXattrSize  = 4096
	maxXattrTotal = 4096
)

// xattrs are the attributes of the tree's own files, by inode number.
type xattrs struct {
	mu    sync.Mutex
	attrs map[uint64]map[string][]byte
}

func (n *virtualNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	x := &n.t.xattrs
	x.mu.Lock()
	defer x.mu.Unlock()
	v, ok := x.attrs[n.StableAttr().Ino][attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *virtualNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	x := &n.t.xattrs
	x.mu.Lock()
	names := make([]string, 0, len(x.attrs[n.StableAttr().Ino]))
	for k := range x.attrs[n.StableAttr().Ino] {
		names = append(names, k)
	}
	x.mu.Unlock()
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
	}
	if len(dest) == 0 {
		return uint32(b.Len()), 0
	}
	if len(dest) < b.Len() {
		return uint32(b.Len()), syscall.ERANGE
	}
	return uint32(copy(dest, b.String())), 0
}

// Setxattr keeps attributes of the user namespace; the others belong to the system.
func (n *virtualNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !strings.HasPrefix(attr, "user.") {
		return syscall.ENOTSUP
	}
	if len(data) > maxXattrSize {
		return syscall.E2BIG
	}
	x := &n.t.xattrs
	x.mu.Lock()
	defer x.mu.Unlock()
	ino := n.StableAttr().Ino
	old, exists := x.attrs[ino][attr]
	if flags&xattrCreate != 0 && exists {
		return syscall.EEXIST
	}
	if flags&xattrReplace != 0 && !exists {
		return syscall.ENODATA
	}
	total := len(attr) + len(data)
	for k, v := range x.attrs[ino] {
		total += len(k) + len(v)
	}
	if exists {
		total -= len(attr) + len(old)
	}
	if total > maxXattrTotal {
		return syscall.ENOSPC
	}
	if x.attrs == nil {
		x.attrs = map[uint64]map[string][]byte{}
	}
	if x.attrs[ino] == nil {
		x.attrs[ino] = map[string][]byte{}
	}
	x.attrs[ino][attr] = append([]byte(nil), data...)
	return 0
}

func (n *virtualNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	x := &n.t.xattrs
	x.mu.Lock()
	defer x.mu.Unlock()
	ino := n.StableAttr().Ino
	if _, ok := x.attrs[ino][attr]; !ok {
		return syscall.ENODATA
	}
	delete(x.attrs[ino], attr)
	if len(x.attrs[ino]) == 0 {
		delete(x.attrs, ino)
	}
	return 0
}

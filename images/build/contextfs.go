package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	gofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/tonistiigi/fsutil"
	fstypes "github.com/tonistiigi/fsutil/types"
)

// contextFS is what a build sends BuildKit from a directory (the context, the
// Dockerfile's directory): read through an os.Root opened on it, so that no link, and no
// directory swapped for one while the build reads, leads outside it; files are opened
// without following a last link and without blocking (a FIFO), and only regular files
// are read. With an owner (not root), only what that user could read himself is sent:
// his own files and directories, and those anyone may read.
type contextFS struct {
	fsutil.FS
	root  *os.Root
	owner *uint32
}

// openContext opens dir as a contextFS; Close releases it.
func openContext(dir string, owner *uint32) (*contextFS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return newContextFS(root, owner), nil
}

func newContextFS(root *os.Root, owner *uint32) *contextFS {
	return &contextFS{FS: fsutil.NewRootFS(safeRoot{Root: fsutil.NewRoot(root), r: root}), root: root, owner: owner}
}

// safeRoot is fsutil's root whose walk opens directories as directories only: never a
// FIFO swapped in for one (an open that would block), never through a last link.
type safeRoot struct {
	fsutil.Root
	r *os.Root
}

func (s safeRoot) FS() gofs.FS { return dirFS{s.r} }

// dirFS is the io/fs view of an os.Root the walk reads directories through.
type dirFS struct{ r *os.Root }

const dirFlags = os.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK

func (d dirFS) Open(name string) (gofs.File, error) {
	f, err := d.r.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d dirFS) Stat(name string) (gofs.FileInfo, error) { return d.r.Lstat(name) }

func (d dirFS) ReadDir(name string) ([]gofs.DirEntry, error) {
	f, err := d.r.OpenFile(name, dirFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, err
}

func (c *contextFS) Close() error { return c.root.Close() }

// readable tells whether the owner may read what st describes (directories: list and
// enter).
func (c *contextFS) readable(uid uint32, mode os.FileMode) bool {
	if c.owner == nil || *c.owner == 0 || uid == *c.owner {
		return true
	}
	if mode.IsDir() {
		return mode.Perm()&0o005 == 0o005
	}
	return mode.Perm()&0o004 != 0
}

func (c *contextFS) Walk(ctx context.Context, target string, fn gofs.WalkDirFunc) error {
	return c.FS.Walk(ctx, target, func(path string, entry gofs.DirEntry, err error) error {
		if err == nil && entry != nil && c.owner != nil && *c.owner != 0 {
			// On a user's behalf: what cannot be told to be his to read is not sent.
			info, ierr := entry.Info()
			var st *fstypes.Stat
			if ierr == nil {
				st, _ = info.Sys().(*fstypes.Stat)
			}
			if st == nil || (info.Mode()&os.ModeSymlink == 0 && !c.readable(st.Uid, info.Mode())) {
				return fmt.Errorf("%s: not readable by uid %d, for whom the build reads it", path, *c.owner)
			}
		}
		return fn(path, entry, err)
	})
}

func (c *contextFS) Open(p string) (io.ReadCloser, error) {
	p = strings.TrimLeft(filepath.Clean("/"+p), "/")
	f, err := c.root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		err = errors.New("not a regular file")
	case sys != nil && !c.readable(sys.Uid, st.Mode()):
		err = fmt.Errorf("not readable by uid %d, for whom the build reads it", *c.owner)
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return f, nil
}

package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// volumesDir is volumes/: one directory per named volume, which is the volume's data
// (served as a passthrough, as a container's rootfs is, in a jail rooted at the
// volume's directory, since containers change volumes too). mkdir makes a volume;
// rmdir of an emptied one removes it (EBUSY while a container uses it). The message of a
// failed mkdir or rmdir is in volumes/error and in events.
type volumesDir struct {
	dirNode
}

var (
	_ gofs.NodeMkdirer = (*volumesDir)(nil)
	_ gofs.NodeRmdirer = (*volumesDir)(nil)
)

func (t *tree) volumesDir() gofs.InodeEmbedder {
	errFile := t.value("error", "volumes/error", func(context.Context) ([]byte, error) { return line(t.volumeErr.get()), nil })
	find := func(ctx context.Context, name string) (entry, bool, error) {
		if name == "error" {
			return errFile, true, nil
		}
		v, err := t.eng.Volume(name)
		if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrInvalidArgument) {
			return entry{}, false, nil
		}
		if err != nil {
			return entry{}, false, err
		}
		return t.volumeEntry(v), true, nil
	}
	list := func(ctx context.Context) ([]entry, error) {
		vs, err := t.eng.Volumes()
		if err != nil {
			return nil, err
		}
		out := []entry{errFile}
		for _, v := range vs {
			if v.Name != "error" { // a volume the CLI named so is not shown: the name is the file's
				out = append(out, t.volumeEntry(v))
			}
		}
		return out, nil
	}
	return &volumesDir{dirNode{virtualNode: virtualNode{t: t}, perm: 0o755, entries: list, find: find}}
}

// volumeEntry is the directory of volume v. Its inode is that of the volume's name and
// creation: a volume removed and made again under its name is a new directory.
func (t *tree) volumeEntry(v *engine.VolumeInfo) entry {
	name, dir := v.Name, filepath.Dir(v.Mountpoint)
	key := fmt.Sprintf("volume@%s@%d", name, v.CreatedAt.UnixNano())
	return entry{name: name, mode: syscall.S_IFDIR | 0o755, key: key, timeout: stableTimeout,
		node: func() gofs.InodeEmbedder {
			st := t.volumeStates.get(name, key, v.CreatedAt, dir)
			return newPassTop(&passDir{t: t, state: st}, "/", key)
		}}
}

func (d *volumesDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t := d.t
	if name == "error" {
		return nil, syscall.EEXIST
	}
	if _, err := t.eng.Volume(name); err == nil {
		return nil, syscall.EEXIST
	}
	v, err := t.eng.CreateVolume(ctx, name, volumes.CreateOptions{})
	if err != nil {
		t.volumeErr.set(err.Error())
		return nil, toErrno(err)
	}
	info, err := t.eng.Volume(v.Name)
	if err != nil {
		return nil, toErrno(err)
	}
	// The volume is its maker's: a tree owner who is not root writes in it.
	if fc, ok := ctx.(*fuse.Context); ok {
		if err := os.Chown(info.Mountpoint, int(fc.Caller.Uid), int(fc.Caller.Gid)); err != nil {
			t.log.Warn("give a new volume to its maker", "volume", name, "err", err)
		}
	}
	t.volumeErr.set("")
	return t.newChild(ctx, &d.Inode, t.volumeEntry(info), out)
}

// Rmdir removes a volume whose directory is empty: ENOTEMPTY otherwise, as for any
// directory, and EBUSY while a container uses it.
func (d *volumesDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	t := d.t
	if name == "error" {
		return syscall.ENOTDIR
	}
	v, err := t.eng.Volume(name)
	if err != nil {
		return toErrno(err)
	}
	if len(v.UsedBy) == 0 {
		if empty, err := t.eng.VolumeEmpty(name); err != nil {
			return toErrno(err)
		} else if !empty {
			return syscall.ENOTEMPTY
		}
	}
	if err := t.eng.RemoveVolume(ctx, name); err != nil {
		t.volumeErr.set(err.Error())
		return toErrno(err)
	}
	t.volumeErr.set("")
	t.volumeStates.forget(name)
	return 0
}

// volumeStates are the states (roots) of the volumes the tree serves, by name.
type volumeStates struct {
	mu sync.Mutex
	m  map[string]volumeState
}

// volumeState is the state of the volume that the key of its directory's inode names: a
// volume removed and made again under its name has a new one.
type volumeState struct {
	key     string
	created time.Time
	s       *rootfsState
}

func (v *volumeStates) get(name, key string, created time.Time, dir string) *rootfsState {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]volumeState{}
	}
	vs, ok := v.m[name]
	if ok && vs.key == key {
		return vs.s
	}
	s := newRootfsState(dir, "_data")
	s.ready.Store(true)
	if ok && created.Before(vs.created) {
		// A node of a volume that went (from a listing older than its removal).
		s.close()
		return s
	}
	if ok {
		vs.s.close()
	}
	v.m[name] = volumeState{key: key, created: created, s: s}
	return s
}

func (v *volumeStates) forget(name string) {
	v.mu.Lock()
	vs, ok := v.m[name]
	delete(v.m, name)
	v.mu.Unlock()
	if ok {
		vs.s.close()
	}
}

func (v *volumeStates) close() {
	v.mu.Lock()
	names := make([]string, 0, len(v.m))
	for n := range v.m {
		names = append(names, n)
	}
	v.mu.Unlock()
	for _, n := range names {
		v.forget(n)
	}
}

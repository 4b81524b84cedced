package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
)

// Options configure Mount.
type Options struct {
	// Mountpoint is the directory to mount the tree on; it is made if missing.
	Mountpoint string
	Engine     *engine.Engine
	// Projects are the compose projects that compose/ shows (none: compose/ is empty).
	Projects *compose.Manager
	Log      *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
}

// Mount is the mounted tree.
type Mount struct {
	dir    string
	server *fuse.Server
	root   *backedDir
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New mounts the tree on opts.Mountpoint and serves it until Unmount. Before mounting
// it prepares the plain directory underneath (a README that explains a stopped engine,
// mode 0555) and clears a stale mount a crashed daemon left.
func New(ctx context.Context, opts Options) (*Mount, error) {
	dir, err := filepath.Abs(opts.Mountpoint)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	if err := clearStale(dir, log); err != nil {
		return nil, err
	}
	uid, gid, err := prepareDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	// The files people write in the tree (specs, scratch files) live under the data
	// root, mirroring the tree's directories.
	backing := opts.Engine.TreeDir()
	for _, dir := range []string{"containers", "compose", "builds"} {
		if err := os.MkdirAll(filepath.Join(backing, dir), 0o755); err != nil {
			return nil, err
		}
	}
	var bst syscall.Stat_t
	if err := syscall.Stat(backing, &bst); err != nil {
		return nil, err
	}
	t := &tree{eng: opts.Engine, projects: opts.Projects, uid: uid, gid: gid, log: log, started: time.Now(), mountpoint: dir}
	if t.specs, err = newSpecs(t, filepath.Join(backing, "containers")); err != nil {
		return nil, err
	}
	root := t.newRoot(backing, uint64(bst.Dev))
	entry, attr := stableTimeout, stableTimeout
	neg := time.Duration(0)
	// The daemon forks (shims, runc) at any time: the FUSE device must not leak into a
	// child, which would keep a dead tree's connection open and hang every process that
	// touches it (a daemon started again after a crash among them). go-fuse's direct
	// mount (as root) opens it without O_CLOEXEC and never sets the flag: forks wait
	// until it is set here. (Through fusermount, go-fuse sets it, and forks itself.)
	direct := os.Geteuid() == 0
	if direct {
		syscall.ForkLock.RLock()
	}
	options := &gofs.Options{
		MountOptions: fuse.MountOptions{
			// The daemon runs as root; the tree belongs to the mount point's owner,
			// and the kernel checks permissions against the modes shown.
			AllowOther:        true,
			Options:           []string{"default_permissions"},
			Name:              "dutchman",
			FsName:            "dutchman",
			DirectMount:       true,
			DirectMountStrict: direct,
			// Passthrough to files on overlayfs (a container's rootfs) stacks two
			// filesystems.
			MaxStackDepth: 2,
			Debug:         opts.Debug,
		},
		NullPermissions: true,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		// No UID/GID here: go-fuse would show every root-owned file as the owner's,
		// those of a container's rootfs too. The tree's own files say their owner.
		// NullPermissions: a mode of 0 in a rootfs is shown as it is.
		RootStableAttr: &gofs.StableAttr{Ino: ino("/")},
	}
	server, err := fuse.NewServer(guard{gofs.NewNodeFS(root, options)}, dir, &options.MountOptions)
	if err == nil {
		go server.Serve()
		err = server.WaitMount()
	}
	if direct {
		closeFuseOnExec()
		syscall.ForkLock.RUnlock()
	}
	if err != nil {
		return nil, fmt.Errorf("mount the tree on %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &Mount{dir: dir, server: server, root: root, log: log, cancel: cancel}
	m.wg.Go(func() { m.follow(ctx) })
	t.specs.reconcile(ctx)
	if t.projects != nil {
		t.projects.SetTree(backing, t.composeJail, func() bool { return t.uid == 0 })
	}
	return m, nil
}

// guard keeps two requests from go-fuse's loopback, which would act as root on the
// daemon's own descriptors and paths: every ioctl (EXT4_IOC_SHUTDOWN on a file of a
// container's rootfs would take down the filesystem of the data root), and statx, which
// go-fuse runs by path and which follows a symbolic link it is asked about. The kernel
// takes ENOSYS for statx as "use getattr".
type guard struct{ fuse.RawFileSystem }

func (guard) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	return fuse.Status(syscall.ENOTTY)
}

func (guard) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	return fuse.ENOSYS
}

// Dir is where the tree is mounted.
func (m *Mount) Dir() string { return m.dir }

// Unmount unmounts the tree. Files still open in it (a shell's working directory) do
// not stop it: the mount is then detached and goes when they are closed.
func (m *Mount) Unmount() error {
	m.cancel()
	m.wg.Wait()
	m.root.t.specs.close()
	defer m.root.t.rootfs.close()
	defer m.root.t.backingDir.state.close()
	defer m.root.t.volumeStates.close()
	err := m.server.Unmount()
	if err != nil {
		m.log.Warn("tree busy, detaching it", "mount", m.dir, "err", err)
		err = detach(m.dir)
	}
	return err
}

// prepareDir makes the mount point if it is missing, puts the README of a stopped
// engine in it and makes it read-only. It returns the owner of the directory, which
// the tree's files show as theirs.
func prepareDir(dir string) (uid, gid uint32, err error) {
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A new mount point belongs to the owner of its parent (the user's home).
		parent, perr := os.Stat(filepath.Dir(dir))
		if perr != nil {
			return 0, 0, perr
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return 0, 0, err
		}
		uid, gid = owner(parent)
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return 0, 0, err
		}
		info, err = os.Stat(dir)
	}
	if err != nil {
		return 0, 0, err
	}
	if !info.IsDir() {
		return 0, 0, fmt.Errorf("not a directory")
	}
	uid, gid = owner(info)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, 0, err
	}
	readme := filepath.Join(dir, "README.md")
	os.Remove(readme)
	if err := os.WriteFile(readme, []byte(Readme(false)), 0o444); err != nil {
		return 0, 0, err
	}
	if err := os.Chown(readme, int(uid), int(gid)); err != nil {
		return 0, 0, err
	}
	return uid, gid, os.Chmod(dir, 0o555)
}

func owner(info fs.FileInfo) (uid, gid uint32) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}

// follow keeps the tree in step with what the other doors do: it tells the kernel at
// once when a container's name comes or goes, so that a cached lookup never shows a
// removed container or hides a new one, and keeps the containers' spec files.
func (m *Mount) follow(ctx context.Context) {
	// A subscriber that falls behind is dropped; it takes up again after the last event
	// it saw, with those it missed first, so that none is lost.
	filter := engine.EventFilter{Since: time.Now()}
	for ctx.Err() == nil {
		past, ch, cancel := m.root.t.eng.Events(filter, true)
		for _, ev := range past {
			m.handle(ev)
			filter = engine.EventFilter{After: ev.Seq}
		}
		for {
			var ev engine.Event
			var ok bool
			select {
			case ev, ok = <-ch:
			case <-ctx.Done():
			}
			if !ok {
				break
			}
			m.handle(ev)
			filter = engine.EventFilter{After: ev.Seq}
		}
		cancel()
	}
}

// handle follows one event of the engine.
func (m *Mount) handle(ev engine.Event) {
	t := m.root.t
	if ev.Type == "volume" {
		if ev.Action == "destroy" {
			t.volumeStates.forget(ev.Name)
		}
		if dir := t.root.EmbeddedInode().GetChild("volumes"); dir != nil {
			dir.NotifyEntry(ev.Name)
		}
		return
	}
	if ev.Type == "network" {
		if dir := t.root.EmbeddedInode().GetChild("networks"); dir != nil {
			dir.NotifyEntry(ev.Name)
		}
		return
	}
	if ev.Type != "container" {
		return
	}
	switch ev.Action {
	case "create":
		t.invalidate(ev.Name)
		if c, err := t.eng.Get(ev.ID); err == nil {
			t.specs.created(c, ev.Time)
		}
	case "die":
		t.rootfs.reset(ev.ID)
	case "destroy":
		t.rootfs.forget(ev.ID)
		t.invalidate(ev.Name)
		t.specs.destroyed(ev.Name, ev.Time)
	case "rename":
		old := ev.Attributes["oldName"]
		t.invalidate(ev.Name, old)
		t.specs.renamed(old, ev.Name)
	}
}

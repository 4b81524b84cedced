package fs

import (
	"hash/fnv"
	"log/slog"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
)

// tree is what every node of the mount shares.
type tree struct {
	eng *engine.Engine
	// uid and gid own the tree's files: the user who owns the mount point.
	uid, gid uint32
	log      *slog.Logger
	started  time.Time
	// root is the tree's root; backing is the loopback root of every backed directory.
	root    *backedDir
	backing *gofs.LoopbackRoot
	// backingDir is what the backed directories share: their jail.
	backingDir *passDir
	// specs keeps containers/*.yaml and the containers in step.
	specs *specs
	// xattrs are the extended attributes of the tree's own files.
	xattrs xattrs
	// rootfs keeps, by container ID, what the tree knows of each container's rootfs/.
	rootfs rootfsStates
	// volumeStates keeps the jails of the volumes the tree serves; volumeErr is
	// volumes/error.
	volumeStates volumeStates
	volumeErr    lastError
	// imageErr is images/error; networkErr is networks/error.
	imageErr   lastError
	networkErr lastError
	// kernelErr is kernels/error.
	kernelErr lastError
	// projects are the engine's compose projects; composeErr is compose/error, and
	// projectErrs the errors of the verbs written to projects' ctl files.
	projects    *compose.Manager
	composeErr  lastError
	projectErrs projectErrors
	// buildsErr is builds/error, and buildErrs the errors of the verbs written to build
	// directories' ctl files.
	buildsErr lastError
	buildErrs projectErrors
	// mountpoint is where the tree is mounted.
	mountpoint string
}

// ino is the inode number of the tree path p: stable for the life of the object at p,
// with the top bit set so that it never meets the numbers passthrough directories take
// from their backing files.
func ino(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64() | 1<<63
}

// Cache lifetimes. Names and attributes of what does not change behind the kernel's back
// are cached; those of files whose content the engine changes (state, logs) are not, so
// that every stat is the truth.
//
// go-fuse replaces a zero timeout with the mount's default, so "no cache" is the
// shortest timeout there is: one nanosecond, expired by the time the kernel looks.
//
// fixedTimeout is for names that cannot change while the inode lives: the files of a
// container's directory, named by the container's ID (a container made again under the
// same name is another directory, which the engine's events invalidate).
const (
	stableTimeout = time.Second
	fixedTimeout  = time.Hour
	noTimeout     = time.Nanosecond
)

// attr fills out with the tree's owner and the given mode, size and time.
func (t *tree) attr(out *fuse.Attr, mode uint32, size uint64, mtime time.Time) {
	out.Mode = mode
	out.Size = size
	out.Uid, out.Gid = t.uid, t.gid
	if mtime.IsZero() {
		mtime = t.started
	}
	out.SetTimes(&mtime, &mtime, &mtime)
	out.Nlink = 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Nlink = 2
	}
	out.Blksize = 4096
	out.Blocks = (size + 511) / 512
}

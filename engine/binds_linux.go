package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// openInTree opens path (O_PATH), a path in the tree's backing directory, resolved
// inside it (as if it were /) whatever links are on the way, a last one included.
func (e *Engine) openInTree(path string) (int, error) {
	root, err := unix.Open(e.TreeDir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	return fsutil.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
}

// checkTreeBind checks that the source of a bind of the tree exists.
func (e *Engine) checkTreeBind(m volumes.Mount) error {
	fd, err := e.openInTree(m.Source)
	if errors.Is(err, unix.ENOENT) {
		return errdefs.Invalid(fmt.Errorf("bind source %s is not in the tree: make it first (the tree's directories are not made for a bind)", m.Source))
	}
	if err != nil {
		return fmt.Errorf("bind source %s in the tree: %w", m.Source, err)
	}
	unix.Close(fd)
	return nil
}

// stageBinds mounts the source of each of c's binds of the tree on a path of the
// daemon's own and puts that path in mounts (the runtime's, one for each of c's), and
// returns what unmounts them, once the runtime has made the container (which keeps
// copies of its own).
//
// The tree's owner, who may not be root, controls what is in the tree: checked and then
// bound by path, a source could be swapped for a link to /etc in between. Resolved
// inside the tree's backing directory to a descriptor, and mounted from that descriptor,
// it is the very file that was resolved.
func (e *Engine) stageBinds(c *Container, mounts []rt.Mount) (release func(), err error) {
	dir := filepath.Join(e.cfg.DataRoot, "binds", c.ID)
	release = func() { unstage(dir) }
	release() // what a crash left
	for i, m := range c.Mounts {
		if !m.InTree {
			continue
		}
		if err := e.stageBind(m, filepath.Join(dir, strconv.Itoa(i))); err != nil {
			release()
			return nil, err
		}
		mounts[i].Source = filepath.Join(dir, strconv.Itoa(i))
	}
	return release, nil
}

// unstage unmounts the staged binds in dir and removes them, never recursively: a
// mount that stayed would lead into the tree's files.
func unstage(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, ent := range ents {
		p := filepath.Join(dir, ent.Name())
		unix.Unmount(p, unix.MNT_DETACH)
		os.Remove(p)
	}
	os.Remove(dir)
}

// unstageAll removes what stageBinds left when the daemon stopped in a start: no
// staged mount outlives a start.
func (e *Engine) unstageAll() {
	dir := filepath.Join(e.cfg.DataRoot, "binds")
	ents, _ := os.ReadDir(dir)
	for _, ent := range ents {
		unstage(filepath.Join(dir, ent.Name()))
	}
}

func (e *Engine) stageBind(m volumes.Mount, stage string) error {
	fd, err := e.openInTree(m.Source)
	if err != nil {
		return fmt.Errorf("bind source %s in the tree: %w", m.Source, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(stage), 0o700); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = os.Mkdir(stage, 0o700)
	} else {
		err = os.WriteFile(stage, nil, 0o600)
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), stage, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind source %s in the tree: %w", m.Source, err)
	}
	// Private: nothing mounted or unmounted here reaches the container's copy.
	return unix.Mount("", stage, "", unix.MS_PRIVATE|unix.MS_REC, "")
}

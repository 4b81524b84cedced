package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// specExts are the extensions of spec files, in the order a rendered spec prefers.
var specExts = []string{".yaml", ".yml", ".json"}

// isSpecName tells whether a file name in containers/ is a container's spec: a valid
// container name and a spec extension. Editors' scratch files (.web.yaml.swp, web.yaml~,
// 4913, ._web.yaml) are not.
func isSpecName(name string) bool {
	ext := filepath.Ext(name)
	if ext != ".yaml" && ext != ".yml" && ext != ".json" {
		return false
	}
	return engine.ValidName(strings.TrimSuffix(name, ext)) == nil
}

// checkSpecName refuses a file name that looks like a spec but names no valid container
// ("my web.yaml"): it could never apply. Hidden files (.web.yaml.swp, ._web.yaml) are
// scratch files, whatever their extension.
func checkSpecName(name string) error {
	ext := filepath.Ext(name)
	if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
		return nil
	}
	if err := engine.ValidName(strings.TrimSuffix(name, ext)); err != nil {
		return fmt.Errorf("spec file %q: %w", name, err)
	}
	return nil
}

// specContainer is the container a spec file is for.
func specContainer(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }

// removalGrace is how long a removed spec file's container outlives it: an editor that
// renames the file away and writes it again (vim, and many others) cancels the removal.
const removalGrace = 2 * time.Second

// specs keeps container spec files and containers in step. A spec saved in the tree is
// applied (the container made or remade to match); a container made by another door
// (the CLI, the API) gets a spec file written for it, and loses it when it goes.
type specs struct {
	t *tree
	// dir is the backing directory of containers/.
	dir string

	mu sync.Mutex
	// removals are the pending removals of containers whose spec went, by name.
	removals map[string]*time.Timer
	// stale names the containers whose spec file differs from what they run: its last
	// save failed.
	stale map[string]bool
	// applying counts the saves (and removals) under way per container name, and
	// applied says when the last one ended: the engine's events about the name until
	// then are the save's own, even those the event follower sees late.
	applying map[string]int
	applied  map[string]time.Time
	wg       sync.WaitGroup
	closed   bool
	// ctx ends with close: background saves stop waiting then.
	ctx    context.Context
	cancel context.CancelFunc
}

func newSpecs(t *tree, dir string) (*specs, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &specs{t: t, dir: dir, ctx: ctx, cancel: cancel, removals: map[string]*time.Timer{}, stale: map[string]bool{}, applying: map[string]int{}, applied: map[string]time.Time{}}, nil
}

// saved applies the spec file name (in containers/) after a save. It returns when the
// container matches the spec, or with the errno of the failure, whose message goes to
// the container's error file and to events. An interrupt stops the waiting.
func (s *specs) saved(ctx context.Context, file string) syscall.Errno {
	name := specContainer(file)
	s.cancelRemoval(name)
	path := filepath.Join(s.dir, file)
	data, err := readSpec(path, filepath.Base(path))
	if errors.Is(err, fs.ErrNotExist) {
		return 0 // saved and gone again already
	}
	if err != nil {
		s.failed(name, err)
		return toErrno(err)
	}
	spec, err := s.load(ctx, file, data)
	if err != nil {
		s.failed(name, err)
		return toErrno(err)
	}
	s.begin(name)
	done := make(chan error, 1)
	go func() {
		_, _, err := s.t.eng.Apply(context.WithoutCancel(ctx), name, spec)
		s.end(name)
		if err != nil {
			s.failed(name, err)
		} else {
			s.setStale(name, false)
			s.t.eng.ReportError(name, nil)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return toErrno(err)
	case <-ctx.Done():
		return syscall.EINTR
	}
}

// saveLater applies spec file name in the background (after a rename, which must not
// wait).
func (s *specs) saveLater(file string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Go(func() { s.saved(s.ctx, file) })
}

// load reads the body of spec file file. It runs in the jail of the tree's backing
// directory: the daemon reads as root what a spec names (env_file), and a spec is its
// owner's, who may read only what is in the tree.
func (s *specs) load(ctx context.Context, file string, data []byte) (spec engine.Spec, err error) {
	if errno := s.t.backingDir.in(ctx, func() {
		spec, err = compose.LoadService(ctx, filepath.Join(compose.TreeSpecDir, file), data, compose.LoadOptions{InTree: true, Privileged: s.t.uid == 0})
	}); errno != 0 {
		return engine.Spec{}, fmt.Errorf("load %s: %w", file, errno)
	}
	return spec, err
}

// check validates the file at path (in the backing jail) before it becomes spec file:
// an invalid one is recorded as a failed save.
func (s *specs) check(ctx context.Context, path, file string) syscall.Errno {
	var data []byte
	var err error
	if errno := s.t.backingDir.in(ctx, func() { data, err = readSpec(path, file) }); errno != 0 {
		return errno
	}
	if err == nil {
		_, err = s.load(ctx, file, data)
	}
	if err != nil {
		s.failed(specContainer(file), err)
		return toErrno(err)
	}
	return 0
}

// failed records a failed save.
func (s *specs) failed(name string, err error) {
	s.setStale(name, true)
	s.t.eng.ReportError(name, err)
}

func (s *specs) setStale(name string, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stale {
		s.stale[name] = true
	} else {
		delete(s.stale, name)
	}
}

// isStale tells whether container name's spec file differs from what it runs.
func (s *specs) isStale(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stale[name]
}

// removed schedules the removal of the container whose spec file went.
func (s *specs) removed(file string) {
	name := specContainer(file)
	if s.file(name) != "" {
		return // another of its spec files remains (web.yml beside web.yaml)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if t := s.removals[name]; t != nil && t.Stop() {
		s.wg.Done()
	}
	s.wg.Add(1)
	s.removals[name] = time.AfterFunc(removalGrace, func() {
		defer s.wg.Done()
		s.expire(name)
	})
}

// cancelRemoval cancels the removal of container name: its spec is back.
func (s *specs) cancelRemoval(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.removals[name]; t != nil && t.Stop() {
		s.wg.Done()
	}
	delete(s.removals, name)
}

// expire removes container name, whose spec went a grace period ago and did not come
// back: stopped as `stop` would, then removed. A spec saved again while the container
// stops is applied once it has gone.
func (s *specs) expire(name string) {
	s.mu.Lock()
	delete(s.removals, name)
	s.mu.Unlock()
	s.begin(name) // the removal's events are not another door's
	defer s.end(name)
	if s.file(name) != "" {
		return
	}
	c, err := s.t.eng.Get(name)
	if err != nil || c.Name != name {
		return
	}
	ctx := s.ctx
	if err := s.t.eng.Stop(ctx, c.ID, nil); err != nil {
		s.t.log.Warn("stop the container of a removed spec", "container", name, "err", err)
	}
	if err := s.t.eng.Remove(ctx, c.ID, engine.RemoveOptions{Force: true}); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		s.t.eng.ReportError(name, err)
	}
	s.setStale(name, false)
	if file := s.file(name); file != "" {
		s.saved(ctx, file)
	}
}

// file is the name of container name's spec file, "" if it has none.
func (s *specs) file(name string) string {
	for _, ext := range specExts {
		if _, err := os.Lstat(filepath.Join(s.dir, name+ext)); err == nil {
			return name + ext
		}
	}
	return ""
}

// begin and end bracket the tree's own work on container name.
func (s *specs) begin(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applying[name]++
}

func (s *specs) end(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applying[name]--; s.applying[name] == 0 {
		delete(s.applying, name)
	}
	s.applied[name] = time.Now()
}

// own tells whether an event about container name at time at comes from the tree's
// own work on it.
func (s *specs) own(name string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applying[name] > 0 || !at.After(s.applied[name])
}

// created writes the spec file of a container another door made. A file of that name
// that says something else is kept beside it as NAME.yaml~.
func (s *specs) created(c *engine.Container, at time.Time) {
	if s.own(c.Name, at) {
		return
	}
	want := compose.RenderService(c.Spec)
	if file := s.file(c.Name); file != "" {
		path := filepath.Join(s.dir, file)
		data, err := readSpec(path, filepath.Base(path))
		if err != nil {
			return
		}
		if bytes.Equal(data, want) {
			return
		}
		if spec, err := s.load(context.Background(), file, data); err == nil && sameSpec(spec, c.Spec) {
			return
		}
		if err := os.Rename(path, path+"~"); err != nil {
			s.t.log.Warn("keep an old spec file", "file", path, "err", err)
			return
		}
		s.t.invalidate(file, file+"~")
	}
	if err := s.write(c.Name+".yaml", want); err != nil {
		s.t.log.Warn("write the spec file of a container", "container", c.Name, "err", err)
	}
	s.setStale(c.Name, false)
	s.t.invalidate(c.Name + ".yaml")
}

// destroyed removes the spec file of a container another door removed.
func (s *specs) destroyed(name string, at time.Time) {
	if s.own(name, at) {
		return
	}
	if c, err := s.t.eng.Get(name); err == nil && c.Name == name && c.State != engine.Removed && c.State != engine.Removing {
		return // made again since (a save that recreated it)
	}
	for _, ext := range specExts {
		if os.Remove(filepath.Join(s.dir, name+ext)) == nil {
			s.t.invalidate(name + ext)
		}
	}
	s.setStale(name, false)
}

// renamed follows a container's rename with its spec file.
func (s *specs) renamed(old, name string) {
	file := s.file(old)
	if file == "" {
		return
	}
	to := name + filepath.Ext(file)
	if err := os.Rename(filepath.Join(s.dir, file), filepath.Join(s.dir, to)); err != nil {
		s.t.log.Warn("rename the spec file of a container", "from", file, "to", to, "err", err)
		return
	}
	s.t.invalidate(file, to)
}

// write writes a spec file atomically, owned by the tree's owner.
func (s *specs) write(file string, data []byte) error {
	tmp, err := os.CreateTemp(s.dir, ".dutchman-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	if err := os.Chown(tmp.Name(), int(s.t.uid), int(s.t.gid)); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(s.dir, file))
}

// reconcile brings spec files and containers in step at start: every container has a
// spec file, and a spec file that says something else than its container runs is stale.
func (s *specs) reconcile(ctx context.Context) {
	for _, c := range s.t.eng.List() {
		file := s.file(c.Name)
		if file == "" {
			s.created(c, time.Now())
			continue
		}
		path := filepath.Join(s.dir, file)
		data, err := readSpec(path, filepath.Base(path))
		if err != nil {
			continue
		}
		spec, err := s.load(ctx, file, data)
		s.setStale(c.Name, err != nil || !sameSpec(spec, c.Spec))
	}
}

// close cancels the pending removals: a daemon stopping does not remove containers.
func (s *specs) close() {
	s.mu.Lock()
	s.closed = true
	for name, t := range s.removals {
		if t.Stop() {
			s.wg.Done()
		}
		delete(s.removals, name)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// readSpec reads a spec file, refusing a symbolic link: the daemon reads as root, and a
// spec is the tree owner's own file, never one elsewhere. Specs are small; a file over
// 1 MiB is refused.
func readSpec(path, name string) ([]byte, error) {
	// Not blocking: a FIFO saved as a spec must not hang the daemon.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, errdefs.Invalid(fmt.Errorf("%s: a spec file cannot be a symbolic link", name))
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, errdefs.Invalid(fmt.Errorf("%s: a spec file must be a regular file", name))
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 1<<20 {
		return nil, errdefs.Invalid(fmt.Errorf("%s: a spec file is at most 1 MiB", name))
	}
	return data, nil
}

// sameSpec tells whether two specs ask for the same container.
func sameSpec(a, b engine.Spec) bool {
	return bytes.Equal(compose.RenderService(a), compose.RenderService(b))
}

package compose

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/fsnotify/fsnotify"
	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

var bucket = []byte("projects")

// settle is how long a project's files must be quiet after a change before it is
// re-applied: an editor's save is several operations (vim renames the old file away
// and writes a new one; others write a temporary file and rename it over).
const settle = 300 * time.Millisecond

// Record is a project brought up through the daemon: how to load it again, and how
// its last apply went.
type Record struct {
	Name string `json:"name"`
	// Options load it again; Options.Env is the environment of the up that made it
	// (interpolation needs it at every re-apply).
	Options  Options  `json:"options"`
	Services []string `json:"services,omitempty"`
	// Files are the files it is loaded from (compose files, .env, env files): a change
	// to one re-applies it.
	Files   []string  `json:"files"`
	Applied time.Time `json:"applied"`
	// Digest is that of the files' contents at the last apply: a save that changes
	// nothing re-applies nothing.
	Digest string `json:"digest"`
	Error  string `json:"error,omitempty"`
	// InTree tells that the project is a directory of the tree's compose/: its paths
	// are in the tree's backing directory, in whose jail it is loaded, and what it may
	// ask depends on the tree's owner at each apply.
	InTree bool `json:"inTree,omitempty"`
	// Owners are the owners of a project's files (outside the tree) when it was
	// brought up: a re-apply needs them unchanged, and the files writable by their
	// owner only, so that nobody else's edit is applied with root's privileges.
	Owners map[string]uint32 `json:"owners,omitempty"`
	// Stopped tells that the project was stopped: a re-apply makes what changed and
	// starts nothing.
	Stopped bool `json:"stopped,omitempty"`
}

// TreeDir is where the tree's compose projects are, in the jail of its backing
// directory.
const TreeDir = "/compose"

// Jail runs f with the tree's backing directory as its root, or fails if f could not
// run.
type Jail func(ctx context.Context, f func()) error

// Manager keeps the projects brought up through the daemon and re-applies one when
// one of its files changes, until it is taken down. Records survive daemon restarts.
type Manager struct {
	e       *engine.Engine
	log     *slog.Logger
	watcher *fsnotify.Watcher
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	projects map[string]*managed
	// watched counts the projects that watch each directory.
	watched map[string]int
	// treeRoot, jail and privileged say where the tree's projects live (once it is
	// mounted) and whether its owner is root.
	treeRoot   string
	jail       Jail
	privileged func() bool
	// applying serialises applies of one project.
	applying keyedLocks
	// inflight cancels the applies of a project under way (or waiting for its lock),
	// which down ends.
	inflight map[string]map[uint64]context.CancelFunc
	token    uint64
	// logs are the growing output files of projects, by name (see LogFile).
	logs map[string]*projectLog
}

type managed struct {
	rec   Record
	timer *time.Timer
}

// keyedLocks is a mutex per name.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (k *keyedLocks) lock(name string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*sync.Mutex{}
	}
	l := k.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		k.locks[name] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// NewManager opens the records of the engine's projects and watches the files of
// those that are up (the tree's once it is mounted: SetTree).
func NewManager(e *engine.Engine) (*Manager, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch compose files: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{e: e, log: e.Log(), watcher: w, ctx: ctx, cancel: cancel, projects: map[string]*managed{},
		watched: map[string]int{}, inflight: map[string]map[uint64]context.CancelFunc{}, logs: map[string]*projectLog{}}
	var recs []Record
	err = e.DB().Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) == nil {
				recs = append(recs, r)
			}
			return nil
		})
	})
	if err != nil {
		w.Close()
		cancel()
		return nil, err
	}
	m.mu.Lock()
	for _, r := range recs {
		m.projects[r.Name] = &managed{rec: r}
		m.watchLocked(r)
	}
	m.mu.Unlock()
	m.wg.Go(m.run)
	// Files saved while the daemon was away are applied now.
	for _, r := range recs {
		if !r.InTree {
			m.changed(r.Name)
		}
	}
	return m, nil
}

// Close stops watching; the projects stay up.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	for _, p := range m.projects {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	m.mu.Unlock()
	m.cancel()
	err := m.watcher.Close()
	m.wg.Wait()
	return err
}

// SetTree tells where the tree's projects are: root is the tree's backing directory, in
// which jail runs their loader, and privileged tells whether the tree's owner is root
// (what its projects may ask). The tree's projects that are up are watched from now on.
func (m *Manager) SetTree(root string, jail Jail, privileged func() bool) {
	m.mu.Lock()
	m.treeRoot, m.jail, m.privileged = root, jail, privileged
	var names []string
	for name, p := range m.projects {
		if p.rec.InTree {
			m.watchLocked(p.rec)
			names = append(names, name)
		}
	}
	m.mu.Unlock()
	for _, name := range names {
		m.changed(name)
	}
}

// Up loads the project o names and brings it up; from then on, a change to its files
// re-applies it.
func (m *Manager) Up(ctx context.Context, o Options, services []string, builds UpBuilds, progress func(Progress)) error {
	return m.apply(ctx, Record{Options: o, Services: services}, builds, progress)
}

// UpBuilds say what an up builds: the missing images of services with a build:
// section (the zero value), all of them (Build, up --build), or none (NoBuild).
type UpBuilds struct {
	Build   bool `json:"build,omitempty"`
	NoBuild bool `json:"noBuild,omitempty"`
}

// UpTree brings up the tree's project name (compose/NAME/).
func (m *Manager) UpTree(ctx context.Context, name string, progress func(Progress)) error {
	return m.apply(ctx, Record{Name: name, Options: treeOptions(name), InTree: true}, UpBuilds{}, progress)
}

func treeOptions(name string) Options {
	return Options{WorkingDir: path.Join(TreeDir, name), Name: name, Guarded: true}
}

// begin registers the apply of project name under way, and returns its context; end
// (deferred) forgets it.
func (m *Manager) begin(ctx context.Context, name string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.token++
	token := m.token
	if m.inflight[name] == nil {
		m.inflight[name] = map[uint64]context.CancelFunc{}
	}
	m.inflight[name][token] = cancel
	m.mu.Unlock()
	return ctx, func() {
		m.mu.Lock()
		delete(m.inflight[name], token)
		if len(m.inflight[name]) == 0 {
			delete(m.inflight, name)
		}
		m.mu.Unlock()
		cancel()
	}
}

// cancelApplies cancels every apply of project name under way.
func (m *Manager) cancelApplies(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, cancel := range m.inflight[name] {
		cancel()
	}
}

// apply loads the project rec says and brings it up, then records it.
func (m *Manager) apply(ctx context.Context, rec Record, builds UpBuilds, progress func(Progress)) error {
	name := rec.Name
	if name == "" {
		// The name is the loaded project's: loaded once here to learn it.
		p, err := m.load(ctx, rec)
		if err != nil {
			return err
		}
		name = p.Name
	}
	ctx, end := m.begin(ctx, name)
	defer end()
	unlock := m.applying.lock(name)
	defer unlock()
	if ctx.Err() != nil {
		return ctx.Err() // taken down while this waited for its turn
	}
	rec.Stopped = false
	digest := m.digest(ctx, rec)
	p, err := m.load(ctx, rec)
	if err == nil && p.Name != name {
		err = fmt.Errorf("the project's name changed to %s while it was brought up", p.Name)
	}
	if err == nil {
		err = m.checkOrigin(p, rec.InTree)
	}
	if err != nil {
		m.failed(name, err)
		return err
	}
	rec.Name, rec.Options.Name = p.Name, p.Name
	before := m.digestFiles(rec)
	rec.Files, rec.Digest = projectFiles(p), digest
	if !slices.Equal(before, m.digestFiles(rec)) {
		rec.Digest = m.digest(ctx, rec) // files the load added (env files)
	}
	if !rec.InTree {
		rec.Owners = fileOwners(m.digestFiles(rec))
	}
	err = Up(ctx, m.e, p, UpOptions{Services: rec.Services, Progress: progress, Load: m.loadOptions(rec), Build: builds.Build, NoBuild: builds.NoBuild})
	rec.Error = ""
	if err != nil {
		rec.Error = err.Error()
	}
	rec.Applied = time.Now().UTC()
	// An apply that down cancelled does not record the project again.
	if rerr := m.record(rec, ctx.Err() == nil); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		m.e.Publish("project", "error", p.Name, map[string]string{"error": err.Error()})
		return err
	}
	m.e.Publish("project", "apply", p.Name, nil)
	return nil
}

// loadOptions say what rec's files may ask: root's, unless it is the tree's and the
// tree's owner is not root (asked at every apply: the owner may change).
func (m *Manager) loadOptions(rec Record) LoadOptions {
	if !rec.InTree {
		return LoadOptions{Privileged: true}
	}
	m.mu.Lock()
	privileged := m.privileged
	m.mu.Unlock()
	return LoadOptions{InTree: true, Privileged: privileged != nil && privileged()}
}

// checkOrigin refuses to take over a project of the same name that runs from
// elsewhere: the tree's project shop and a repository's are two projects.
func (m *Manager) checkOrigin(p *types.Project, inTree bool) error {
	for _, c := range projectContainers(m.e, p.Name) {
		if dir := c.Spec.Labels[LabelWorkingDir]; dir != p.WorkingDir && (inTree || isTreeDir(dir)) {
			return errdefs.Conflict(fmt.Errorf("project %s already runs from %s: take it down there first, or name this one otherwise", p.Name, dir))
		}
	}
	return nil
}

func isTreeDir(dir string) bool { return path.Dir(dir) == TreeDir }

// failed records err as the last error of project name, if it is recorded, and
// announces it.
func (m *Manager) failed(name string, err error) {
	if rec, ok := m.recorded(name); ok {
		rec.Error = err.Error()
		m.record(rec, false)
	}
	m.e.Publish("project", "error", name, map[string]string{"error": err.Error()})
}

// recorded is a copy of project name's record, if it has one.
func (m *Manager) recorded(name string) (Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.projects[name]
	if !ok {
		return Record{}, false
	}
	return p.rec, true
}

// load loads the project rec names: in the tree's jail if it is the tree's.
func (m *Manager) load(ctx context.Context, rec Record) (*types.Project, error) {
	if !rec.InTree {
		return Load(ctx, rec.Options)
	}
	m.mu.Lock()
	jail := m.jail
	m.mu.Unlock()
	if jail == nil {
		return nil, errors.New("the tree is not mounted: its projects wait for it")
	}
	var p *types.Project
	var err error
	if jerr := jail(ctx, func() { p, err = Load(ctx, rec.Options) }); jerr != nil {
		return nil, jerr
	}
	return p, err
}

// digestFiles are the files whose contents say whether rec changed: those the loader
// may read whatever they say (the named files, or the default names and overrides in
// the project's directory, and its .env), and the env files of its last load.
func (m *Manager) digestFiles(rec Record) []string {
	files := slices.Clone(rec.Options.Files)
	dir := rec.Options.WorkingDir
	if dir == "" && len(files) > 0 {
		dir = filepath.Dir(files[0])
	}
	if len(files) == 0 {
		for _, n := range append(slices.Clone(cli.DefaultFileNames), cli.DefaultOverrideFileNames...) {
			files = append(files, path.Join(dir, n))
		}
	}
	files = append(files, path.Join(dir, ".env"))
	files = append(files, rec.Files...)
	slices.Sort(files)
	return slices.Compact(files)
}

// digest hashes the contents of rec's files as the loader will read them (the tree's
// in its jail), taken before a load. "" if they cannot be read at all.
func (m *Manager) digest(ctx context.Context, rec Record) string {
	files := m.digestFiles(rec)
	if !rec.InTree {
		return filesDigest(files)
	}
	m.mu.Lock()
	jail := m.jail
	m.mu.Unlock()
	if jail == nil {
		return ""
	}
	var d string
	if jail(ctx, func() { d = filesDigest(files) }) != nil {
		return ""
	}
	return d
}

// Down takes project name down, and stops watching its files. An apply of it under
// way (waiting for a dependency) is cancelled first.
func (m *Manager) Down(ctx context.Context, name string, o DownOptions) error {
	return m.down(ctx, name, o, false, false)
}

// DownTree takes down the tree's project name; not a project of that name that runs
// from elsewhere.
func (m *Manager) DownTree(ctx context.Context, name string, o DownOptions) error {
	return m.down(ctx, name, o, true, false)
}

// projectPlace says where a recorded project lives.
func projectPlace(rec Record) string {
	if rec.InTree {
		return "the tree (compose/" + rec.Name + ")"
	}
	if rec.Options.WorkingDir != "" {
		return rec.Options.WorkingDir
	}
	if len(rec.Options.Files) > 0 {
		return filepath.Dir(rec.Options.Files[0])
	}
	return "elsewhere"
}

// DownOutside takes down project name run from elsewhere; not the tree's project of
// that name.
func (m *Manager) DownOutside(ctx context.Context, name string, o DownOptions) error {
	return m.down(ctx, name, o, false, true)
}

func (m *Manager) down(ctx context.Context, name string, o DownOptions, tree, outside bool) error {
	// Where the project runs from is checked before anything is cancelled.
	check := func() error {
		if !tree && !outside {
			return nil
		}
		if rec, err := m.Project(name); err == nil && rec.InTree != tree {
			return errdefs.Conflict(fmt.Errorf("project %s runs from %s: take it down there", name, projectPlace(rec)))
		}
		for _, c := range projectContainers(m.e, name) {
			if dir := c.Spec.Labels[LabelWorkingDir]; (dir == path.Join(TreeDir, name)) != tree {
				return errdefs.Conflict(fmt.Errorf("project %s runs from %s: take it down there", name, dir))
			}
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	m.cancelApplies(name)
	unlock := m.applying.lock(name)
	defer unlock()
	if err := check(); err != nil {
		return err
	}
	if err := Down(ctx, m.e, name, o); err != nil {
		return err
	}
	m.forget(name)
	m.e.Publish("project", "down", name, nil)
	return nil
}

// Stop stops project name (or some of its services): a whole project stopped is one
// that saves then do not start again (until Start or up).
func (m *Manager) Stop(ctx context.Context, name string, services []string) error {
	unlock := m.applying.lock(name)
	defer unlock()
	if len(services) == 0 {
		m.setStopped(name, true)
	}
	return Stop(ctx, m.e, name, services)
}

// Start starts project name (or some of its services) again.
func (m *Manager) Start(ctx context.Context, name string, services []string) error {
	unlock := m.applying.lock(name)
	defer unlock()
	if len(services) == 0 {
		m.setStopped(name, false)
	}
	return Start(ctx, m.e, name, services)
}

func (m *Manager) setStopped(name string, stopped bool) {
	if rec, ok := m.recorded(name); ok && rec.Stopped != stopped {
		rec.Stopped = stopped
		m.record(rec, false)
	}
}

// Projects are the recorded projects, by name, without the environments they were
// brought up with.
func (m *Manager) Projects() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Record, 0, len(m.projects))
	for _, p := range m.projects {
		r := p.rec
		r.Options.Env = nil
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Project is the record of project name.
func (m *Manager) Project(name string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.projects[name]
	if !ok {
		return Record{}, errdefs.NotFound(fmt.Errorf("no project %s is up", name))
	}
	return p.rec, nil
}

// record keeps rec, and watches its files; a record that is not there is made only if
// create says so (not by a late failure of a project taken down meanwhile).
func (m *Manager) record(rec Record, create bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.projects[rec.Name]
	if p == nil && !create {
		return nil
	}
	b, _ := json.Marshal(rec)
	if err := m.e.DB().Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(rec.Name), b) }); err != nil {
		return fmt.Errorf("record project %s: %w", rec.Name, err)
	}
	if p == nil {
		p = &managed{}
		m.projects[rec.Name] = p
	} else {
		m.unwatchLocked(p.rec)
	}
	p.rec = rec
	m.watchLocked(rec)
	return nil
}

func (m *Manager) forget(name string) {
	m.e.DB().Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(name)) })
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.projects[name]; ok {
		if p.timer != nil {
			p.timer.Stop()
		}
		m.unwatchLocked(p.rec)
		delete(m.projects, name)
	}
	m.stopLogLocked(name)
}

// watchDirsLocked are the directories to watch for rec: those of its files, or for the
// tree's project its own directory only (a directory named elsewhere in the tree may be
// a link its owner made, to anywhere on the host). The caller holds mu.
func (m *Manager) watchDirsLocked(rec Record) []string {
	if rec.InTree {
		if m.treeRoot == "" {
			return nil
		}
		return []string{filepath.Join(m.treeRoot, TreeDir, rec.Name)}
	}
	var dirs []string
	for _, f := range rec.Files {
		if d := filepath.Dir(f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// watchLocked watches the directories of rec's files: an editor replaces a file, so the
// file itself is not what to watch.
func (m *Manager) watchLocked(rec Record) {
	for _, dir := range m.watchDirsLocked(rec) {
		if m.watched[dir] == 0 {
			if err := m.watcher.Add(dir); err != nil {
				m.log.Warn("watch compose files", "dir", dir, "err", err)
			}
		}
		m.watched[dir]++
	}
}

func (m *Manager) unwatchLocked(rec Record) {
	for _, dir := range m.watchDirsLocked(rec) {
		if m.watched[dir]--; m.watched[dir] <= 0 {
			delete(m.watched, dir)
			m.watcher.Remove(dir)
		}
	}
}

// run hands the watcher's events to the projects whose files they touch.
func (m *Manager) run() {
	for {
		select {
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			m.mu.Lock()
			var names []string
			for name, p := range m.projects {
				if p.rec.InTree {
					if slices.Contains(m.watchDirsLocked(p.rec), filepath.Dir(ev.Name)) {
						names = append(names, name)
					}
				} else if slices.Contains(p.rec.Files, ev.Name) {
					names = append(names, name)
				}
			}
			m.mu.Unlock()
			for _, name := range names {
				m.changed(name)
			}
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			m.log.Warn("watch compose files", "err", err)
		case <-m.ctx.Done():
			return
		}
	}
}

// changed re-applies project name once its files have been quiet for a while.
func (m *Manager) changed(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.projects[name]
	if !ok || m.closed {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(settle, func() {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		m.wg.Add(1)
		m.mu.Unlock()
		defer m.wg.Done()
		m.reapply(name)
	})
}

// reapply loads project name again and applies it, if its files changed since its last
// apply. An invalid file changes nothing: the error is recorded and announced.
func (m *Manager) reapply(name string) {
	ctx, end := m.begin(m.ctx, name)
	defer end()
	unlock := m.applying.lock(name)
	defer unlock()
	rec, err := m.Project(name)
	if err != nil || ctx.Err() != nil {
		return // taken down meanwhile
	}
	// The digest is taken before the load: a save during the apply is seen as a change
	// by the next one.
	digest := m.digest(ctx, rec)
	if digest == rec.Digest {
		return
	}
	if !rec.InTree {
		err = m.checkOwners(rec)
	}
	var p *types.Project
	if err == nil {
		p, err = m.load(ctx, rec)
	}
	if err == nil && p.Name != name {
		err = fmt.Errorf("the project's name changed to %s: take it down first (compose down), then up again", p.Name)
	}
	if err == nil {
		err = Up(ctx, m.e, p, UpOptions{Services: rec.Services, Load: m.loadOptions(rec), NoStart: rec.Stopped})
	}
	if err != nil {
		if ctx.Err() != nil {
			return // taken down
		}
		// The same broken files are not tried again until they change.
		rec.Digest, rec.Error = digest, err.Error()
		m.record(rec, false)
		m.log.Warn("re-apply compose project", "project", name, "err", err)
		m.e.Publish("project", "error", name, map[string]string{"error": err.Error()})
		return
	}
	before := m.digestFiles(rec)
	rec.Files, rec.Error, rec.Applied = projectFiles(p), "", time.Now().UTC()
	rec.Digest = digest
	if !slices.Equal(before, m.digestFiles(rec)) {
		rec.Digest = m.digest(ctx, rec) // files the load added (env files)
	}
	if err := m.record(rec, false); err != nil {
		m.log.Warn("record compose project", "project", name, "err", err)
	}
	m.e.Publish("project", "apply", name, nil)
}

// fileOwners are the owners of files (those that exist).
func fileOwners(files []string) map[string]uint32 {
	out := map[string]uint32{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			out[f] = st.Sys().(*syscall.Stat_t).Uid
		}
	}
	return out
}

// checkOwners refuses to re-apply a project outside the tree whose files changed hands,
// or that someone other than their owner may write (the file, or its directory, which
// lets anyone replace it): the daemon applies them with root's privileges.
func (m *Manager) checkOwners(rec Record) error {
	// The project's owner: that of its first file.
	owner, known := uint32(0), false
	for _, f := range m.digestFiles(rec) {
		if u, ok := rec.Owners[f]; ok {
			owner, known = u, true
			break
		}
	}
	for _, f := range m.digestFiles(rec) {
		for p := f; ; p = filepath.Dir(p) {
			st, err := os.Stat(p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return err
			default:
				sys := st.Sys().(*syscall.Stat_t)
				if p == f {
					if was, ok := rec.Owners[p]; ok && was != sys.Uid {
						return fmt.Errorf("%s changed owner (uid %d, was %d) since the project was brought up: not re-applied; up it again", p, sys.Uid, was)
					} else if !ok && known && sys.Uid != owner && sys.Uid != 0 {
						return fmt.Errorf("%s is not the project's owner's (uid %d, not %d): not re-applied; up it again", p, sys.Uid, owner)
					}
				}
				// Group write is the owner's alone where the group is the owner's own
				// (user private groups, umask 002).
				groupOK := sys.Gid == sys.Uid
				if (st.Mode().Perm()&0o002 != 0 || (st.Mode().Perm()&0o020 != 0 && !groupOK)) && st.Mode()&os.ModeSticky == 0 {
					return fmt.Errorf("%s may be written by users other than its owner: not re-applied (its changes would be applied as root); up it again", p)
				}
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return nil
}

// projectFiles are the files project p is loaded from: its compose files, its .env,
// and its services' env files.
func projectFiles(p *types.Project) []string {
	files := slices.Clone(p.ComposeFiles)
	files = append(files, filepath.Join(p.WorkingDir, ".env"))
	for _, s := range p.Services {
		for _, f := range s.EnvFiles {
			files = append(files, f.Path)
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// filesDigest hashes the names and contents of files, read as env files are (regular
// files of at most 1 MiB, opened without blocking); a missing one counts as such.
func filesDigest(files []string) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		data, err := readEnvFile(f)
		switch {
		case err == nil:
			h.Write(data)
		case !errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(h, "error %v", err)
		}
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// BuildTree builds the images of the tree's project name's services that have a build:
// section (compose build).
func (m *Manager) BuildTree(ctx context.Context, name string, noCache bool) error {
	rec := Record{Options: treeOptions(name), InTree: true}
	p, err := m.load(ctx, rec)
	if err != nil {
		return err
	}
	return Build(ctx, m.e, p, BuildOptions{NoCache: noCache, Load: m.loadOptions(rec)}, nil)
}

// PullTree pulls the images of the tree's project name.
func (m *Manager) PullTree(ctx context.Context, name string) error {
	p, err := m.load(ctx, Record{Options: treeOptions(name), InTree: true})
	if err != nil {
		return err
	}
	return Pull(ctx, m.e, p, nil)
}

// IsUp tells whether project name is up (recorded: its files are watched).
func (m *Manager) IsUp(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.projects[name]
	return ok
}

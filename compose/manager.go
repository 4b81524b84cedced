package compose

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

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
	// are in the tree's backing directory, in whose jail it is loaded. Privileged says
	// what its files may ask (see LoadOptions).
	InTree     bool `json:"inTree,omitempty"`
	Privileged bool `json:"privileged,omitempty"`
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
	// treeRoot and jail are where the tree's projects live, once it is mounted.
	treeRoot string
	jail     Jail
	// watched counts the projects that watch each directory.
	watched map[string]int
	// applying serialises applies of one project.
	applying keyedLocks
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
// those that are up.
func NewManager(e *engine.Engine) (*Manager, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch compose files: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{e: e, log: e.Log(), watcher: w, ctx: ctx, cancel: cancel, projects: map[string]*managed{}, watched: map[string]int{}}
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
	for _, r := range recs {
		m.projects[r.Name] = &managed{rec: r}
		if !r.InTree {
			m.watch(m.realFiles(r))
		}
	}
	m.wg.Go(m.run)
	// Files saved while the daemon was away are applied now.
	for _, r := range recs {
		m.changed(r.Name)
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
// which jail runs their loader. The tree's projects that are up are watched from now on.
func (m *Manager) SetTree(root string, jail Jail) {
	m.mu.Lock()
	m.treeRoot, m.jail = root, jail
	var names []string
	for name, p := range m.projects {
		if p.rec.InTree {
			m.watchLocked(m.realFiles(p.rec))
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
func (m *Manager) Up(ctx context.Context, o Options, services []string, progress func(Progress)) error {
	return m.apply(ctx, Record{Options: o, Services: services, Privileged: true}, progress)
}

// UpTree brings up the tree's project name (compose/NAME/), whose files may ask what
// privileged allows.
func (m *Manager) UpTree(ctx context.Context, name string, privileged bool, progress func(Progress)) error {
	o := Options{WorkingDir: path.Join(TreeDir, name), Name: name, Guarded: true}
	return m.apply(ctx, Record{Name: name, Options: o, InTree: true, Privileged: privileged}, progress)
}

// apply loads the project rec says and brings it up, then records it.
func (m *Manager) apply(ctx context.Context, rec Record, progress func(Progress)) error {
	p, err := m.load(ctx, rec)
	if err != nil {
		if rec.Name != "" {
			m.failed(rec.Name, err)
		}
		return err
	}
	unlock := m.applying.lock(p.Name)
	defer unlock()
	rec.Name, rec.Options.Name = p.Name, p.Name
	rec.Files = projectFiles(p)
	rec.Digest = filesDigest(m.realFiles(rec))
	err = Up(ctx, m.e, p, UpOptions{Services: rec.Services, Progress: progress, Load: LoadOptions{InTree: rec.InTree, Privileged: rec.Privileged}})
	if err != nil {
		rec.Error = err.Error()
	}
	rec.Applied = time.Now().UTC()
	if rerr := m.record(rec); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		m.e.Publish("project", "error", p.Name, map[string]string{"error": err.Error()})
		return err
	}
	m.e.Publish("project", "apply", p.Name, nil)
	return nil
}

// failed records err as the last error of project name, if it is recorded, and
// announces it.
func (m *Manager) failed(name string, err error) {
	m.mu.Lock()
	p, ok := m.projects[name]
	m.mu.Unlock()
	if ok {
		rec := p.rec
		rec.Error = err.Error()
		m.record(rec)
	}
	m.e.Publish("project", "error", name, map[string]string{"error": err.Error()})
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

// realFiles are the paths of rec's files on the host.
func (m *Manager) realFiles(rec Record) []string {
	if !rec.InTree {
		return rec.Files
	}
	out := make([]string, len(rec.Files))
	for i, f := range rec.Files {
		out[i] = filepath.Join(m.treeRoot, f)
	}
	return out
}

// Down takes project name down, and stops watching its files.
func (m *Manager) Down(ctx context.Context, name string, o DownOptions) error {
	unlock := m.applying.lock(name)
	defer unlock()
	if err := Down(ctx, m.e, name, o); err != nil {
		return err
	}
	m.forget(name)
	m.e.Publish("project", "down", name, nil)
	return nil
}

// Projects are the recorded projects, by name.
func (m *Manager) Projects() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Record, 0, len(m.projects))
	for _, p := range m.projects {
		out = append(out, p.rec)
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

// record keeps rec, and watches its files.
func (m *Manager) record(rec Record) error {
	b, _ := json.Marshal(rec)
	if err := m.e.DB().Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(rec.Name), b) }); err != nil {
		return fmt.Errorf("record project %s: %w", rec.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.projects[rec.Name]
	if p == nil {
		p = &managed{}
		m.projects[rec.Name] = p
	}
	old := m.realFiles(p.rec)
	if p.rec.Name == "" {
		old = nil
	}
	p.rec = rec
	m.watchLocked(m.realFiles(rec))
	m.unwatchLocked(old)
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
		m.unwatchLocked(m.realFiles(p.rec))
		delete(m.projects, name)
	}
}

func (m *Manager) watch(files []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watchLocked(files)
}

// watchLocked watches the directories of files: an editor replaces a file, so the
// file itself is not what to watch.
func (m *Manager) watchLocked(files []string) {
	for _, dir := range dirsOf(files) {
		if m.watched[dir] == 0 {
			if err := m.watcher.Add(dir); err != nil {
				m.log.Warn("watch compose files", "dir", dir, "err", err)
			}
		}
		m.watched[dir]++
	}
}

func (m *Manager) unwatchLocked(files []string) {
	for _, dir := range dirsOf(files) {
		if m.watched[dir]--; m.watched[dir] <= 0 {
			delete(m.watched, dir)
			m.watcher.Remove(dir)
		}
	}
}

func dirsOf(files []string) []string {
	var dirs []string
	for _, f := range files {
		if d := filepath.Dir(f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
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
				if slices.Contains(m.realFiles(p.rec), ev.Name) {
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
	if m.ctx.Err() != nil {
		return
	}
	unlock := m.applying.lock(name)
	defer unlock()
	rec, err := m.Project(name)
	if err != nil {
		return // taken down meanwhile
	}
	digest := filesDigest(m.realFiles(rec))
	if digest == rec.Digest {
		return
	}
	p, err := m.load(m.ctx, rec)
	if err == nil && p.Name != name {
		err = fmt.Errorf("the project's name changed to %s: take it down first (compose down), then up again", p.Name)
	}
	if err == nil {
		err = Up(m.ctx, m.e, p, UpOptions{Services: rec.Services, Load: LoadOptions{InTree: rec.InTree, Privileged: rec.Privileged}})
	}
	if err != nil {
		// The same broken files are not tried again until they change.
		rec.Digest, rec.Error = digest, err.Error()
		m.record(rec)
		m.log.Warn("re-apply compose project", "project", name, "err", err)
		m.e.Publish("project", "error", name, map[string]string{"error": err.Error()})
		return
	}
	rec.Files, rec.Error, rec.Applied = projectFiles(p), "", time.Now().UTC()
	rec.Digest = filesDigest(m.realFiles(rec))
	if err := m.record(rec); err != nil {
		m.log.Warn("record compose project", "project", name, "err", err)
	}
	m.e.Publish("project", "apply", name, nil)
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

// filesDigest hashes the names and contents of files (a missing one counts as such).
func filesDigest(files []string) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if fh, err := os.Open(f); err == nil {
			io.Copy(h, io.LimitReader(fh, 16<<20))
			fh.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(h, "error %v", err)
		}
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// PullTree pulls the images of the tree's project name.
func (m *Manager) PullTree(ctx context.Context, name string) error {
	p, err := m.load(ctx, Record{Options: Options{WorkingDir: path.Join(TreeDir, name), Name: name, Guarded: true}, InTree: true})
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

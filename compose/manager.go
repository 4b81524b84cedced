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
}

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
		m.watch(r.Files)
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

// Up loads the project o names and brings it up; from then on, a change to its files
// re-applies it.
func (m *Manager) Up(ctx context.Context, o Options, services []string, progress func(Progress)) error {
	p, err := Load(ctx, o)
	if err != nil {
		return err
	}
	unlock := m.applying.lock(p.Name)
	defer unlock()
	files := projectFiles(p)
	digest := filesDigest(files)
	if err := Up(ctx, m.e, p, UpOptions{Services: services, Progress: progress}); err != nil {
		return err
	}
	o.Name = p.Name
	rec := Record{Name: p.Name, Options: o, Services: services, Files: files, Applied: time.Now().UTC(), Digest: digest}
	if err := m.record(rec); err != nil {
		return err
	}
	m.e.Publish("project", "apply", p.Name, nil)
	return nil
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
	old := p.rec.Files
	p.rec = rec
	m.watchLocked(rec.Files)
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
		m.unwatchLocked(p.rec.Files)
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
				if slices.Contains(p.rec.Files, ev.Name) {
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
	digest := filesDigest(rec.Files)
	if digest == rec.Digest {
		return
	}
	p, err := Load(m.ctx, rec.Options)
	if err == nil && p.Name != name {
		err = fmt.Errorf("the project's name changed to %s: take it down first (compose down), then up again", p.Name)
	}
	if err == nil {
		err = Up(m.ctx, m.e, p, UpOptions{Services: rec.Services})
	}
	if err != nil {
		// The same broken files are not tried again until they change.
		rec.Digest, rec.Error = digest, err.Error()
		m.record(rec)
		m.log.Warn("re-apply compose project", "project", name, "err", err)
		m.e.Publish("project", "error", name, map[string]string{"error": err.Error()})
		return
	}
	rec.Files, rec.Digest, rec.Error, rec.Applied = projectFiles(p), filesDigest(projectFiles(p)), "", time.Now().UTC()
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

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// A build directory is builds/NAME/ of the tree: a build context (a Dockerfile and its
// files, or a `source` link to a project elsewhere) that `build [TAG]...` written to its
// ctl builds. Its record and the log of its last build are kept in the data root's
// builds/ directory.

// Build directory states.
const (
	BuildIdle     = "idle"
	BuildBuilding = "building"
	BuildBuilt    = "built"
	BuildFailed   = "failed"
	BuildPushing  = "pushing"
)

// BuildDir is what the engine knows of a build directory.
type BuildDir struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Tags and ID are those of the last build that succeeded.
	Tags     []string  `json:"tags,omitempty"`
	ID       string    `json:"id,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// BuildDirOptions are a build directory's build's.
type BuildDirOptions struct {
	// Tags name the image (default NAME, that is NAME:latest).
	Tags    []string
	NoCache bool
	// Owner is the tree's owner: unless root, a source link must lead to a directory of
	// his.
	Owner uint32
}

// treeBuilds holds the build directories' records, and the cancel functions of the
// builds under way.
type treeBuilds struct {
	mu      sync.Mutex
	dirs    map[string]*BuildDir
	running map[string]context.CancelFunc
}

// maxTreeBuilds bounds the builds of build directories under way at once: each is a
// buildkitd job of its owner's choosing.
const maxTreeBuilds = 4

func (e *Engine) buildDirsPath() string { return filepath.Join(e.cfg.DataRoot, "builds") }

// BuildDirLog is the file of build directory name's last build's log.
func (e *Engine) BuildDirLog(name string) string {
	return filepath.Join(e.buildDirsPath(), name+".log")
}

// BuildDirState is build directory name's record (state idle if it was never built).
func (e *Engine) BuildDirState(name string) BuildDir {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	return *e.buildDirLocked(name)
}

func (e *Engine) buildDirLocked(name string) *BuildDir {
	tb := &e.treeBuilds
	if tb.dirs == nil {
		tb.dirs = map[string]*BuildDir{}
	}
	if d, ok := tb.dirs[name]; ok {
		return d
	}
	d := &BuildDir{Name: name, State: BuildIdle}
	if b, err := os.ReadFile(filepath.Join(e.buildDirsPath(), name+".json")); err == nil && json.Unmarshal(b, d) == nil {
		if d.State == BuildBuilding || d.State == BuildPushing {
			// The daemon stopped during it.
			d.State, d.Error = BuildFailed, "interrupted: the daemon stopped during the "+d.State
		}
	}
	d.Name = name
	tb.dirs[name] = d
	return d
}

// setBuildDir changes build directory name's record and saves it.
func (e *Engine) setBuildDir(name string, change func(d *BuildDir)) {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	e.setBuildDirLocked(name, change)
}

func (e *Engine) setBuildDirLocked(name string, change func(d *BuildDir)) {
	d := e.buildDirLocked(name)
	change(d)
	if err := os.MkdirAll(e.buildDirsPath(), 0o700); err == nil {
		b, _ := json.Marshal(d)
		tmp := filepath.Join(e.buildDirsPath(), "."+name+".json")
		if err := os.WriteFile(tmp, b, 0o600); err == nil {
			os.Rename(tmp, filepath.Join(e.buildDirsPath(), name+".json"))
		}
	}
}

// claimBuildDir marks build directory name busy with state, and returns its record as
// it was, or fails with a conflict while it is busy already.
func (e *Engine) claimBuildDir(name, state string) (BuildDir, error) {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	d := e.buildDirLocked(name)
	if d.State == BuildBuilding || d.State == BuildPushing {
		return BuildDir{}, errdefs.Conflict(fmt.Errorf("builds/%s is %s", name, d.State))
	}
	was := *d
	e.setBuildDirLocked(name, func(d *BuildDir) { d.State, d.Error, d.Started, d.Finished = state, "", time.Now().UTC(), time.Time{} })
	return was, nil
}

// BuildInDir builds build directory name of the tree, writing BuildKit's progress to
// its log.
func (e *Engine) BuildInDir(ctx context.Context, name string, o BuildDirOptions) (*build.Result, error) {
	tags := o.Tags
	if len(tags) == 0 {
		tags = []string{name}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := e.startTreeBuild(name, cancel); err != nil {
		return nil, err
	}
	defer e.endTreeBuild(name)
	if _, err := e.claimBuildDir(name, BuildBuilding); err != nil {
		return nil, err
	}
	res, err := e.buildInDir(ctx, name, tags, o)
	if errors.Is(err, context.Canceled) {
		// ECANCELED to the writer of build: it says what happened.
		err = fmt.Errorf("builds/%s: %w", name, syscall.ECANCELED)
	}
	e.setBuildDir(name, func(d *BuildDir) {
		d.Finished = time.Now().UTC()
		if err != nil {
			d.State, d.Error = BuildFailed, err.Error()
			return
		}
		d.State, d.Tags, d.ID = BuildBuilt, res.Tags, res.ID
	})
	return res, err
}

func (e *Engine) buildInDir(ctx context.Context, name string, tags []string, o BuildDirOptions) (*build.Result, error) {
	if err := os.MkdirAll(e.buildDirsPath(), 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(e.BuildDirLog(name))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	opts, release, err := e.buildDirContext(name, o.Owner)
	if err != nil {
		fmt.Fprintln(logf, err)
		return nil, err
	}
	defer release()
	opts.Tags, opts.NoCache, opts.Unprivileged = tags, o.NoCache, o.Owner != 0
	progress, wait := build.PlainLog(logf)
	res, err := e.Build(ctx, opts, progress)
	wait()
	if err != nil && strings.HasPrefix(opts.Context, "/proc/self/fd/") {
		// A source link's directory, pinned by a descriptor: named as the user knows it.
		err = &renamedError{error: err, msg: strings.ReplaceAll(err.Error(), opts.Context, "builds/"+name+"/source")}
	}
	if err != nil {
		fmt.Fprintf(logf, "ERROR: %v\n", err)
		return nil, err
	}
	for _, t := range res.Tags {
		fmt.Fprintf(logf, "Tagged %s\n", t)
	}
	fmt.Fprintf(logf, "Built %s\n", res.ID)
	return res, nil
}

// startTreeBuild registers the build of directory name under way, unless one of it
// is, or maxTreeBuilds are.
func (e *Engine) startTreeBuild(name string, cancel context.CancelFunc) error {
	tb := &e.treeBuilds
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.running == nil {
		tb.running = map[string]context.CancelFunc{}
	}
	if _, ok := tb.running[name]; ok {
		return errdefs.Conflict(fmt.Errorf("builds/%s is building", name))
	}
	if len(tb.running) >= maxTreeBuilds {
		return errdefs.Conflict(fmt.Errorf("builds/%s: %d builds of build directories are under way, the most at once", name, maxTreeBuilds))
	}
	tb.running[name] = cancel
	return nil
}

func (e *Engine) endTreeBuild(name string) {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	delete(e.treeBuilds.running, name)
}

// CancelBuildDir stops the build of directory name under way.
func (e *Engine) CancelBuildDir(name string) error {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	cancel, ok := e.treeBuilds.running[name]
	if !ok {
		return errdefs.Conflict(fmt.Errorf("builds/%s is not building", name))
	}
	cancel()
	return nil
}

// PushBuildDir pushes the image build directory name last built, under each of its
// tags, writing what it does to the log.
func (e *Engine) PushBuildDir(ctx context.Context, name string) error {
	d, err := e.claimBuildDir(name, BuildPushing)
	if err != nil {
		return err
	}
	if len(d.Tags) == 0 {
		e.setBuildDir(name, func(bd *BuildDir) { *bd = d })
		return errdefs.Conflict(fmt.Errorf("builds/%s has built nothing to push: echo build REGISTRY/REPOSITORY:TAG > builds/%s/ctl first", name, name))
	}
	logf, ferr := os.OpenFile(e.BuildDirLog(name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if ferr == nil {
		defer logf.Close()
	}
	for _, t := range d.Tags {
		var digest string
		if digest, err = e.PushImage(ctx, t, "", nil); err != nil {
			err = fmt.Errorf("push %s: %w", t, err)
			break
		}
		if logf != nil {
			fmt.Fprintf(logf, "Pushed %s %s\n", t, digest)
		}
	}
	if err != nil && logf != nil {
		fmt.Fprintf(logf, "ERROR: %v\n", err)
	}
	// The state is the last build's again; the error the push's, if it failed.
	e.setBuildDir(name, func(bd *BuildDir) {
		bd.State, bd.Error, bd.Started, bd.Finished = d.State, d.Error, d.Started, d.Finished
		if err != nil {
			bd.Error = err.Error()
		}
	})
	return err
}

// ForgetBuildDir forgets build directory name (its directory goes): its record and
// log. It fails while the directory builds or pushes.
func (e *Engine) ForgetBuildDir(name string) error {
	e.treeBuilds.mu.Lock()
	defer e.treeBuilds.mu.Unlock()
	d := e.buildDirLocked(name)
	if d.State == BuildBuilding || d.State == BuildPushing {
		return errdefs.Conflict(fmt.Errorf("builds/%s is %s", name, d.State))
	}
	delete(e.treeBuilds.dirs, name)
	var errs []error
	for _, f := range []string{name + ".json", name + ".log"} {
		if err := os.Remove(filepath.Join(e.buildDirsPath(), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

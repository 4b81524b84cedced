package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// container is the engine's live view of one container.
//
// Reading its state never waits for work in progress: the record is an immutable value
// swapped atomically on each change of state (listings, inspect and the tree read it).
// Operations that take time (start, stop, remove) hold op, one at a time per container.
// A change of state holds mu only while it checks the table, persists and announces.
type container struct {
	op  sync.Mutex
	mu  sync.Mutex
	rec atomic.Pointer[Container]
	// changed is closed and replaced at every change of state, to wake waiters.
	changed chan struct{}

	// Under mu: the running task, closed when its exit has been handled.
	task   rt.Task
	exited chan struct{}
	// Under mu: the pending restart of a restart policy, and its back-off.
	restartTimer *time.Timer
	backoff      time.Duration
}

func newContainer(c *Container) *container {
	ct := &container{changed: make(chan struct{})}
	ct.rec.Store(c)
	return ct
}

// snapshot is the container's current record; callers must not change it.
func (ct *container) snapshot() *Container { return ct.rec.Load() }

// cancelRestartLocked drops a pending restart of the restart policy. The caller holds mu.
func (ct *container) cancelRestartLocked() {
	if ct.restartTimer != nil {
		ct.restartTimer.Stop()
		ct.restartTimer = nil
	}
}

// detach forgets the task without stopping it (the engine is closing).
func (ct *container) detach() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.restartTimer != nil {
		ct.restartTimer.Stop()
	}
	if ct.task != nil {
		ct.task.Close()
	}
}

// transition moves ct to state to, applying change to the new record: it checks the
// state table, persists the record, then announces the event (action, if not empty).
func (e *Engine) transition(ct *container, to State, action string, attrs map[string]string, change func(*Container)) error {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return e.transitionLocked(ct, to, action, attrs, change)
}

func (e *Engine) transitionLocked(ct *container, to State, action string, attrs map[string]string, change func(*Container)) error {
	cur := ct.rec.Load()
	if !canMove(cur.State, to) {
		return &StateError{Name: cur.Name, State: cur.State, Verb: "move to " + string(to)}
	}
	next := *cur
	next.State = to
	if change != nil {
		change(&next)
	}
	if to == Removed {
		if err := e.unpersist(next.ID); err != nil {
			return fmt.Errorf("remove record of %s: %w", next.Name, err)
		}
	} else if err := e.persist(&next); err != nil {
		return fmt.Errorf("record state of %s: %w", next.Name, err)
	}
	ct.rec.Store(&next)
	close(ct.changed)
	ct.changed = make(chan struct{})
	if action != "" {
		e.publishContainer(&next, action, attrs)
	}
	return nil
}

func (e *Engine) publishContainer(c *Container, action string, attrs map[string]string) {
	a := map[string]string{"image": c.Image, "name": c.Name}
	for k, v := range attrs {
		a[k] = v
	}
	e.events.publish(Event{Type: "container", Action: action, ID: c.ID, Name: c.Name, Attributes: a})
}

// lookup finds a container by ID, unambiguous ID prefix, or name.
func (e *Engine) lookup(ref string) (*container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id, ok := e.names[ref]; ok {
		if ct := e.containers[id]; ct != nil {
			return ct, nil
		}
		// The name is reserved by a container being created.
		return nil, errdefs.NotFound(fmt.Errorf("no such container: %s", ref))
	}
	if ct, ok := e.containers[ref]; ok {
		return ct, nil
	}
	var found *container
	if len(ref) >= 3 {
		for id, ct := range e.containers {
			if strings.HasPrefix(id, ref) {
				if found != nil {
					return nil, errdefs.Invalid(fmt.Errorf("container ID prefix %q is ambiguous", ref))
				}
				found = ct
			}
		}
	}
	if found == nil {
		return nil, errdefs.NotFound(fmt.Errorf("no such container: %s", ref))
	}
	return found, nil
}

// Get returns the record of the container ref names (ID, ID prefix or name).
func (e *Engine) Get(ref string) (*Container, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	return ct.snapshot(), nil
}

// List returns every container, newest first. It never waits for work in progress.
func (e *Engine) List() []*Container {
	e.mu.Lock()
	out := make([]*Container, 0, len(e.containers))
	for _, ct := range e.containers {
		out = append(out, ct.snapshot())
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Create makes a container from spec, named name (or a generated name when empty), in
// state created: its root filesystem is ready, its process not started. The image must
// be in the store.
func (e *Engine) Create(ctx context.Context, name string, spec Spec) (*Container, error) {
	return e.create(ctx, name, spec, nil)
}

// create makes a container; inherit maps mount targets to anonymous volumes a container
// it replaces had there, which it takes over (as Compose does on recreate) instead of
// making new ones.
func (e *Engine) create(ctx context.Context, name string, spec Spec, inherit map[string]string) (*Container, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	runtimeName, err := e.chooseRuntime(ctx, spec.Runtime)
	if err != nil {
		return nil, err
	}
	img, err := e.images.Get(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	id := newID()
	if name != "" {
		if err := ValidName(name); err != nil {
			return nil, err
		}
	}
	name, err = e.reserveName(name, id)
	if err != nil {
		return nil, err
	}
	release := func() {
		e.mu.Lock()
		delete(e.names, name)
		e.mu.Unlock()
	}
	c := &Container{
		ID: id, Name: name, Created: time.Now().UTC(), Spec: spec,
		Image: imageName(spec.Image, img), ImageDigest: img.Digest, ImageID: img.ID,
		Runtime: runtimeName, State: Created,
	}
	c.Args, c.Env, c.WorkingDir, c.User = mergeImageConfig(&spec, img)
	if img.Config != nil {
		c.Healthcheck = resolveHealthcheck(spec.Healthcheck, img.Config.Config.Healthcheck)
	} else {
		c.Healthcheck = resolveHealthcheck(spec.Healthcheck, nil)
	}
	mounts, made, releaseVolumes, err := e.resolveMounts(ctx, &spec, img, inherit)
	if err != nil {
		release()
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	// Held until the container's record is in place, which then says they are in use.
	defer releaseVolumes()
	c.Mounts = mounts
	undoVolumes := func() { e.undoVolumes(ctx, made) }
	fs, err := e.images.CreateRootfs(ctx, id, name, img.Digest)
	if err != nil {
		undoVolumes()
		release()
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if err := checkMountTargets(fs.Path, c.Mounts); err != nil {
		e.images.RemoveRootfs(ctx, id)
		undoVolumes()
		release()
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if err := e.copyUp(ctx, fs.Path, c.Mounts); err != nil {
		e.images.RemoveRootfs(ctx, id)
		undoVolumes()
		release()
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if err := e.persist(c); err != nil {
		e.images.RemoveRootfs(ctx, id)
		undoVolumes()
		release()
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	for _, n := range made {
		e.publishVolume(n, "create")
	}
	ct := newContainer(c)
	e.mu.Lock()
	e.containers[id] = ct
	e.mu.Unlock()
	e.publishContainer(c, "create", nil)
	return c, nil
}

func imageName(ref string, img *images.Image) string {
	if r, err := images.ParseReference(ref); err == nil {
		for _, n := range img.Names {
			if n == r.String() {
				return n
			}
		}
	}
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return img.ID
}

// reserveName claims name (or a generated one) for id.
func (e *Engine) reserveName(name, id string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if name != "" {
		if other, ok := e.names[name]; ok {
			return "", errdefs.AlreadyExists(fmt.Errorf("the container name %q is already in use by container %s: remove it or choose another name", name, other[:12]))
		}
		e.names[name] = id
		return name, nil
	}
	for attempt := 0; ; attempt++ {
		if n := randomName(attempt); e.names[n] == "" {
			e.names[n] = id
			return n, nil
		}
	}
}

// chooseRuntime resolves a spec's runtime: "auto" (or none) is vm where guests are seen
// to run under KVM (which may wait for a probe of a few seconds), oci elsewhere.
func (e *Engine) chooseRuntime(ctx context.Context, name string) (string, error) {
	switch name {
	case "", "auto":
		if e.vmRunsKVM(ctx) {
			return "vm", nil
		}
		return "oci", nil
	case "oci", "vm":
		if e.runtimes[name] == nil {
			return "", errdefs.Invalid(fmt.Errorf("runtime %s is not available on this system", name))
		}
		return name, nil
	}
	return "", errdefs.Invalid(fmt.Errorf("unknown runtime %q: want oci, vm or auto", name))
}

// mergeImageConfig merges the spec with the image's config as Docker does: an
// entrypoint given in the spec also drops the image's Cmd; the spec's environment
// overrides the image's by key.
func mergeImageConfig(spec *Spec, img *images.Image) (args, env []string, cwd, user string) {
	var ic struct {
		Entrypoint, Cmd, Env []string
		WorkingDir, User     string
	}
	if img.Config != nil {
		c := img.Config.Config
		ic.Entrypoint, ic.Cmd, ic.Env, ic.WorkingDir, ic.User = c.Entrypoint, c.Cmd, c.Env, c.WorkingDir, c.User
	}
	entrypoint, cmd := ic.Entrypoint, ic.Cmd
	if spec.Entrypoint != nil {
		entrypoint, cmd = spec.Entrypoint, nil
		if len(entrypoint) == 1 && entrypoint[0] == "" {
			entrypoint = nil
		}
	}
	if spec.Command != nil {
		cmd = spec.Command
	}
	args = append(append([]string{}, entrypoint...), cmd...)
	env = mergeEnv(ic.Env, spec.Env)
	cwd, user = ic.WorkingDir, ic.User
	if spec.WorkingDir != "" {
		cwd = spec.WorkingDir
	}
	if spec.User != "" {
		user = spec.User
	}
	return args, env, cwd, user
}

func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	index := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
		} else {
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// runtimeConfig is what the runtime needs to run c in rootfs.
func (e *Engine) runtimeConfig(c *Container, rootfs string) (*rt.Config, error) {
	hostname := c.Spec.Hostname
	if hostname == "" {
		hostname = c.ID[:12]
	}
	mounts, err := e.runtimeMounts(c)
	if err != nil {
		return nil, err
	}
	return &rt.Config{
		ID: c.ID, Name: c.Name, Rootfs: rootfs, Args: c.Args, Env: c.Env, Cwd: c.WorkingDir,
		User: c.User, Tty: c.Spec.Tty, OpenStdin: c.Spec.OpenStdin, Hostname: hostname,
		Memory: c.Spec.Memory, CPUs: c.Spec.CPUs, Labels: c.Spec.Labels, Mounts: mounts,
	}, nil
}

// AttachResult is how an attach ended: with the process's exit (Exit set), or an error,
// or neither when the attach ended first (the client went).
type AttachResult struct {
	Exit *rt.ExitStatus
	Err  error
}

// StartOptions are what a start may also ask for.
type StartOptions struct {
	// Attach connects these streams to the process before it starts, so that not a byte
	// of its output is missed (docker run without -d). Once the task exists, Attached
	// (buffered) receives one value when the streams end; if Start fails before, none.
	Attach   *rt.Streams
	Attached chan<- AttachResult
	// ConsoleSize is the size of the container's terminal at start (rows, columns).
	ConsoleSize [2]uint16
	// AttachContext ends the attach (the client went); the engine's own if nil.
	AttachContext context.Context
}

// Start starts the container ref names. Starting a running container does nothing.
func (e *Engine) Start(ctx context.Context, ref string, opts StartOptions) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	c := ct.snapshot()
	switch c.State {
	case Running:
		return nil
	case Restarting:
		ct.mu.Lock()
		ct.cancelRestartLocked()
		ct.mu.Unlock()
	case Created, Stopped:
	default:
		return &StateError{Name: c.Name, State: c.State, Verb: "start"}
	}
	e.resetRestarts(ct)
	return e.start(ctx, ct, opts, "start")
}

// resetRestarts forgets the restarts and back-off of a restart policy: a start by hand
// begins anew, as in Docker.
func (e *Engine) resetRestarts(ct *container) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.backoff = 0
	if c := ct.rec.Load(); c.RestartCount != 0 {
		next := *c
		next.RestartCount = 0
		if e.persist(&next) == nil {
			ct.rec.Store(&next)
		}
	}
}

// start runs the container's process. The caller holds ct.op.
func (e *Engine) start(ctx context.Context, ct *container, opts StartOptions, action string) error {
	if err := e.transition(ct, Starting, "", nil, func(c *Container) {
		c.ManuallyStopped, c.Error = false, ""
	}); err != nil {
		return err
	}
	c := ct.snapshot()
	task, nr, err := e.runTask(ctx, ct, c, opts)
	if err != nil {
		e.releaseVolumes(c)
		code := startFailureCode(err)
		terr := e.transition(ct, Stopped, "die", map[string]string{"exitCode": fmt.Sprint(code), "error": err.Error()}, func(c *Container) {
			c.ExitCode, c.Error, c.FinishedAt, c.Pid = code, err.Error(), time.Now().UTC(), 0
		})
		if terr != nil {
			e.log.Error("record failed start", "container", c.Name, "err", terr)
		}
		if c.Spec.AutoRemove {
			// As docker run --rm: a container whose process never started goes too.
			go e.Remove(e.ctx, c.ID, RemoveOptions{Force: true})
		}
		return fmt.Errorf("start container %s: %w", c.Name, err)
	}
	exited := make(chan struct{})
	ct.mu.Lock()
	ct.task, ct.exited = task, exited
	err = e.transitionLocked(ct, Running, action, nil, func(c *Container) {
		c.Pid, c.StartedAt, c.ExitCode, c.OOMKilled = task.Pid(), time.Now().UTC(), 0, false
		c.NetNS, c.Endpoints = nr.NetNS, nr.Endpoints
		c.Health = nil
		if c.Healthcheck != nil {
			c.Health = &Health{Status: HealthStarting}
		}
	})
	ct.mu.Unlock()
	if err != nil {
		task.Kill(ctx, syscall.SIGKILL, true)
	}
	e.refreshHosts(nr.Endpoints)
	e.monitor(ct, task, exited)
	return err
}

// runTask prepares and starts the container's task, and returns it with what it made
// of the container's network for this run.
func (e *Engine) runTask(ctx context.Context, ct *container, c *Container, opts StartOptions) (task rt.Task, nr *netRun, err error) {
	runtime := e.runtimes[c.Runtime]
	if runtime == nil {
		return nil, nil, errdefs.Invalid(fmt.Errorf("unknown runtime %q", c.Runtime))
	}
	fs, err := e.images.Rootfs(ctx, c.ID)
	if err != nil {
		return nil, nil, err
	}
	// What an earlier run left (after a crash, or a restart) goes first.
	if err := runtime.Delete(ctx, c.ID); err != nil {
		return nil, nil, err
	}
	cfg, err := e.runtimeConfig(c, fs.Path)
	if err != nil {
		return nil, nil, err
	}
	cfg.ConsoleSize = opts.ConsoleSize
	cfg.Warn = func(msg string) { e.publishContainer(c, "warning", map[string]string{"message": msg}) }
	cfg.Image = fs.Image
	cfg.ImageView = func(ctx context.Context) (string, error) { return e.images.View(ctx, fs.Image) }
	unstage, err := e.stageBinds(c, cfg.Mounts)
	if err != nil {
		return nil, nil, err
	}
	// The runtime binds the staged sources while it starts the container, which keeps
	// its own mounts of them.
	defer unstage()
	if err := e.mountVolumes(ctx, c); err != nil {
		return nil, nil, err
	}
	if nr, err = e.connect(ctx, c); err != nil {
		return nil, nil, err
	}
	// Recorded before the process exists: a daemon that dies meanwhile finds, at its
	// restart, a network in use, not one to release.
	if err := e.updateNetworks(ct, func(c *Container) error { c.NetNS, c.Endpoints = nr.NetNS, nr.Endpoints; return nil }); err != nil {
		e.disconnect(ctx, c.ID, nr.NetNS, nr.Endpoints)
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			e.disconnect(ctx, c.ID, nr.NetNS, nr.Endpoints)
			e.updateNetworks(ct, func(c *Container) error { c.NetNS, c.Endpoints = "", nil; return nil })
		}
	}()
	cfg.NetNS, cfg.HostsFile, cfg.ResolvConf = nr.NetNS, nr.HostsFile, nr.ResolvConf
	task, err = e.createTask(ctx, runtime, c, cfg, opts)
	return task, nr, err
}

// createTask creates and starts the task of container c.
func (e *Engine) createTask(ctx context.Context, runtime rt.Runtime, c *Container, cfg *rt.Config, opts StartOptions) (rt.Task, error) {
	task, err := runtime.Create(ctx, cfg, e.logDir(c.ID))
	if err != nil {
		return nil, err
	}
	if opts.Attach != nil {
		ready := make(chan struct{})
		failed := make(chan error, 1)
		streams := *opts.Attach
		streams.Attached = func() { close(ready) }
		actx := opts.AttachContext
		if actx == nil {
			actx = e.ctx
		}
		go func() {
			st, err := task.Attach(actx, streams)
			if opts.Attached != nil {
				opts.Attached <- AttachResult{Exit: st, Err: err}
			}
			failed <- err
		}()
		select {
		case <-ready:
		case err := <-failed:
			task.Kill(ctx, syscall.SIGKILL, true)
			task.Close()
			runtime.Delete(context.WithoutCancel(ctx), c.ID)
			return nil, fmt.Errorf("attach: %w", err)
		}
	}
	if _, err := task.Start(ctx); err != nil {
		task.Kill(ctx, syscall.SIGKILL, true)
		task.Close()
		runtime.Delete(context.WithoutCancel(ctx), c.ID)
		return nil, err
	}
	return task, nil
}

// startFailureCode is the exit code Docker gives a container whose process could not
// start: 127 when the command is not found, 126 when it cannot be run, 128 otherwise.
func startFailureCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"):
		return 126
	}
	return 128
}

// monitor waits for task to exit and handles the exit.
func (e *Engine) monitor(ct *container, task rt.Task, exited chan struct{}) {
	e.monitors.Add(1)
	// The run's health probes end with it.
	health, endHealth := context.WithCancel(e.ctx)
	if c := ct.snapshot(); c.Healthcheck != nil && c.Health != nil {
		go e.checkHealth(health, ct, c)
	}
	go func() {
		defer e.monitors.Done()
		defer endHealth()
		select {
		case st, ok := <-task.Wait():
			endHealth()
			if !ok {
				st = rt.ExitStatus{Code: 255, Error: "lost the container's exit status", At: time.Now().UTC()}
			}
			e.exited(ct, task, st)
			close(exited)
		case <-e.ctx.Done():
			// The engine is closing; the container runs on and the next engine will
			// reattach.
		}
	}()
}

// exited handles the exit of a container's task: record it, then restart the container
// as its policy says, or remove it if it asked to be removed.
func (e *Engine) exited(ct *container, task rt.Task, st rt.ExitStatus) {
	c := ct.snapshot()
	if err := e.runtimes[c.Runtime].Delete(e.ctx, c.ID); err != nil {
		e.log.Warn("clean up after exit", "container", c.Name, "err", err)
	}
	// A stopped container's filesystem is not mounted (as in Docker); start mounts it.
	// Nor are the filesystems of its volumes, unless another container uses them, and
	// its network goes (addresses and published ports are freed).
	if err := e.images.Unmount(e.ctx, c.ID); err != nil {
		e.log.Warn("unmount after exit", "container", c.Name, "err", err)
	}
	e.releaseVolumes(c)
	e.disconnect(e.ctx, c.ID, c.NetNS, c.Endpoints)
	defer e.refreshHosts(c.Endpoints)
	task.Close()
	attrs := map[string]string{"exitCode": fmt.Sprint(st.Code)}
	if st.Error != "" {
		attrs["error"] = st.Error
	}
	if st.OOMKilled {
		e.publishContainer(c, "oom", nil)
	}
	ct.mu.Lock()
	ct.task = nil
	// The record may have changed since (a stop or kill while the exit was on its way).
	c = ct.rec.Load()
	delay, restart := e.restartDelay(ct, c, st)
	to := Stopped
	if restart {
		to = Restarting
	}
	err := e.transitionLocked(ct, to, "die", attrs, func(c *Container) {
		c.ExitCode, c.OOMKilled, c.FinishedAt, c.Pid = st.Code, st.OOMKilled, st.At, 0
		c.NetNS, c.Endpoints, c.Health = "", nil, nil
		if st.Error != "" {
			c.Error = st.Error
		}
		if restart {
			c.RestartCount++
		}
	})
	if err == nil && restart {
		ct.restartTimer = time.AfterFunc(delay, func() { e.restartAfterExit(ct) })
	}
	ct.mu.Unlock()
	if err != nil {
		e.log.Error("record exit", "container", c.Name, "err", err)
		return
	}
	if !restart && c.Spec.AutoRemove {
		go func() {
			if err := e.Remove(e.ctx, c.ID, RemoveOptions{Force: true}); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				e.log.Error("remove container on exit", "container", c.Name, "err", err)
			}
		}()
	}
}

// Restart policies back off as Docker's do: 100 ms, doubled after each restart up to a
// minute, back to 100 ms once a run lasted 10 seconds.
const (
	restartBackoffMin   = 100 * time.Millisecond
	restartBackoffMax   = time.Minute
	restartBackoffReset = 10 * time.Second
)

// restartDelay decides whether c, which exited with st, is restarted, and after how
// long. The caller holds ct.mu.
func (e *Engine) restartDelay(ct *container, c *Container, st rt.ExitStatus) (time.Duration, bool) {
	if c.State == Stopping || c.ManuallyStopped || c.Spec.AutoRemove || e.ctx.Err() != nil {
		return 0, false
	}
	p, _ := ParseRestartPolicy(c.Spec.Restart)
	switch p.Name {
	case "always", "unless-stopped":
	case "on-failure":
		if st.Code == 0 || (p.MaxRetries > 0 && c.RestartCount >= p.MaxRetries) {
			return 0, false
		}
	default:
		return 0, false
	}
	if !c.StartedAt.IsZero() && st.At.Sub(c.StartedAt) >= restartBackoffReset {
		ct.backoff = 0
	}
	if ct.backoff == 0 {
		ct.backoff = restartBackoffMin
	} else {
		ct.backoff = min(ct.backoff*2, restartBackoffMax)
	}
	return ct.backoff, true
}

func (e *Engine) restartAfterExit(ct *container) {
	if e.ctx.Err() != nil {
		return
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	ct.mu.Lock()
	ct.restartTimer = nil
	ct.mu.Unlock()
	if ct.snapshot().State != Restarting {
		return // stopped or removed meanwhile
	}
	if err := e.start(e.ctx, ct, StartOptions{}, "restart"); err != nil {
		e.log.Warn("restart by policy failed", "container", ct.snapshot().Name, "err", err)
	}
}

// stopGrace is how long stop waits after the stop signal before SIGKILL.
func stopGrace(c *Container, override *time.Duration) time.Duration {
	if override != nil {
		return *override
	}
	if c.Spec.StopGracePeriod != nil {
		return time.Duration(*c.Spec.StopGracePeriod)
	}
	return 10 * time.Second
}

// Stop stops the container ref names: its stop signal (SIGTERM by default), then, after
// the grace period (timeout if not nil), SIGKILL. Stopping a container that is not
// running does nothing. A stopped container is left alone by its restart policy.
func (e *Engine) Stop(ctx context.Context, ref string, timeout *time.Duration) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	return e.stop(ctx, ct, timeout, "stop")
}

// stop is Stop with ct.op held. The signal, the grace period and the SIGKILL run to the
// end even if the caller stops waiting: a stop cut short would leave the container
// stopping, with nothing to finish it.
func (e *Engine) stop(ctx context.Context, ct *container, timeout *time.Duration, action string) error {
	c := ct.snapshot()
	switch c.State {
	case Created, Stopped:
		return nil
	case Restarting:
		ct.mu.Lock()
		ct.cancelRestartLocked()
		err := e.transitionLocked(ct, Stopped, action, nil, func(c *Container) { c.ManuallyStopped = true })
		ct.mu.Unlock()
		return err
	case Running, Paused, Stopping:
	default:
		return &StateError{Name: c.Name, State: c.State, Verb: "stop"}
	}
	ct.mu.Lock()
	task, exited := ct.task, ct.exited
	paused := c.State == Paused
	var err error
	if c.State != Stopping {
		err = e.transitionLocked(ct, Stopping, "", nil, func(c *Container) { c.ManuallyStopped = true })
	}
	ct.mu.Unlock()
	if err != nil {
		return err
	}
	if task == nil {
		return &StateError{Name: c.Name, State: c.State, Verb: "stop"}
	}
	sig := syscall.SIGTERM
	if c.Spec.StopSignal != "" {
		sig, _ = ParseSignal(c.Spec.StopSignal)
	}
	if err := task.Kill(e.ctx, sig, false); err != nil {
		e.log.Warn("send stop signal", "container", c.Name, "err", err)
	}
	if paused {
		// A frozen process cannot act on its signal.
		task.Resume(e.ctx)
	}
	select {
	case <-exited:
	case <-time.After(stopGrace(c, timeout)):
		if err := task.Kill(e.ctx, syscall.SIGKILL, true); err != nil {
			e.log.Warn("send SIGKILL", "container", c.Name, "err", err)
		}
		select {
		case <-exited:
		case <-e.ctx.Done():
			return e.ctx.Err()
		}
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
	if action != "" {
		e.publishContainer(ct.snapshot(), action, nil)
	}
	return nil
}

// Restart stops the container ref names (if running) and starts it again.
func (e *Engine) Restart(ctx context.Context, ref string, timeout *time.Duration) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	if err := e.stop(ctx, ct, timeout, ""); err != nil {
		return err
	}
	e.resetRestarts(ct)
	return e.start(ctx, ct, StartOptions{}, "restart")
}

// Kill sends sig to the container's main process. The container must be running.
func (e *Engine) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.mu.Lock()
	c := ct.rec.Load()
	task := ct.task
	if task == nil || (c.State != Running && c.State != Paused && c.State != Stopping) {
		ct.mu.Unlock()
		return &StateError{Name: c.Name, State: c.State, Verb: "kill"}
	}
	// A container killed by hand is not brought back by its restart policy.
	next := *c
	next.ManuallyStopped = true
	if err := e.persist(&next); err != nil {
		ct.mu.Unlock()
		return err
	}
	ct.rec.Store(&next)
	ct.mu.Unlock()
	if err := task.Kill(ctx, sig, false); err != nil {
		return fmt.Errorf("kill %s: %w", c.Name, err)
	}
	e.publishContainer(&next, "kill", map[string]string{"signal": fmt.Sprint(int(sig))})
	return nil
}

// Pause freezes the container's processes.
func (e *Engine) Pause(ctx context.Context, ref string) error {
	return e.freeze(ctx, ref, true)
}

// Unpause thaws them.
func (e *Engine) Unpause(ctx context.Context, ref string) error {
	return e.freeze(ctx, ref, false)
}

func (e *Engine) freeze(ctx context.Context, ref string, pause bool) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	ct.mu.Lock()
	c, task := ct.rec.Load(), ct.task
	ct.mu.Unlock()
	from, to, verb := Running, Paused, "pause"
	if !pause {
		from, to, verb = Paused, Running, "unpause"
	}
	if c.State != from || task == nil {
		return &StateError{Name: c.Name, State: c.State, Verb: verb}
	}
	if pause {
		err = task.Pause(ctx)
	} else {
		err = task.Resume(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, c.Name, err)
	}
	return e.transition(ct, to, verb, nil, nil)
}

// killAndWait kills the container's processes and waits for the exit to be recorded.
// The caller holds ct.op.
func (e *Engine) killAndWait(ct *container) error {
	ct.mu.Lock()
	task, exited := ct.task, ct.exited
	if task != nil {
		next := *ct.rec.Load()
		next.ManuallyStopped = true
		if err := e.persist(&next); err == nil {
			ct.rec.Store(&next)
		}
	}
	ct.mu.Unlock()
	if task == nil {
		return nil
	}
	if task.Pid() == 0 {
		// Created but never started: nothing runs.
		task.Kill(e.ctx, syscall.SIGKILL, true)
	} else if err := task.Kill(e.ctx, syscall.SIGKILL, true); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	e.publishContainer(ct.snapshot(), "kill", map[string]string{"signal": "9"})
	select {
	case <-exited:
		return nil
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
}

// RemoveOptions say how to remove.
type RemoveOptions struct {
	// Force kills a running container first.
	Force bool
	// Volumes removes the container's anonymous volumes too (docker rm -v); --rm
	// containers always do.
	Volumes bool
}

// Remove removes the container ref names: its root filesystem, logs and record. A
// running container is refused unless forced.
func (e *Engine) Remove(ctx context.Context, ref string, opts RemoveOptions) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if opts.Force {
		// A stop in progress holds the container for its grace period: kill now so
		// that it ends at once.
		e.Kill(ctx, ref, syscall.SIGKILL)
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	c := ct.snapshot()
	switch c.State {
	case Removed:
		return errdefs.NotFound(fmt.Errorf("no such container: %s", ref))
	case Running, Paused, Starting, Stopping:
		if !opts.Force {
			return errdefs.Conflict(fmt.Errorf("cannot remove container %s: it is %s: stop it first, or force the removal", c.Name, c.State))
		}
		if err := e.killAndWait(ct); err != nil {
			return err
		}
	}
	ct.mu.Lock()
	ct.cancelRestartLocked()
	err = e.transitionLocked(ct, Removing, "", nil, nil)
	ct.mu.Unlock()
	if err != nil {
		return err
	}
	c = ct.snapshot()
	var errs []error
	if r := e.runtimes[c.Runtime]; r != nil {
		errs = append(errs, r.Delete(ctx, c.ID))
	}
	errs = append(errs, e.images.RemoveRootfs(ctx, c.ID), removeDir(e.containerDir(c.ID)))
	if err := errors.Join(errs...); err != nil {
		// Keep the record, so that removing again retries what failed.
		e.transition(ct, Stopped, "", nil, func(c *Container) { c.Error = err.Error() })
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	if err := e.transition(ct, Removed, "destroy", nil, nil); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.containers, c.ID)
	if e.names[c.Name] == c.ID {
		delete(e.names, c.Name)
	}
	e.mu.Unlock()
	if opts.Volumes || c.Spec.AutoRemove {
		e.removeAnonymousVolumes(ctx, c)
	}
	return nil
}

// Rename gives the container ref names a new name.
func (e *Engine) Rename(ctx context.Context, ref, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	c := ct.snapshot()
	if c.State == Removing || c.State == Removed {
		return &StateError{Name: c.Name, State: c.State, Verb: "rename"}
	}
	if _, err := e.reserveName(name, c.ID); err != nil {
		return err
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	next := *ct.rec.Load()
	old := next.Name
	next.Name = name
	if err := e.persist(&next); err != nil {
		e.mu.Lock()
		delete(e.names, name)
		e.mu.Unlock()
		return err
	}
	ct.rec.Store(&next)
	e.mu.Lock()
	delete(e.names, old)
	e.mu.Unlock()
	e.publishContainer(&next, "rename", map[string]string{"oldName": old})
	return nil
}

// WaitCondition is what Wait waits for.
type WaitCondition string

// Wait conditions, as docker wait's.
const (
	WaitNotRunning WaitCondition = "not-running"
	WaitNextExit   WaitCondition = "next-exit"
	WaitRemoved    WaitCondition = "removed"
)

// Wait waits until the container ref names reaches cond and returns its exit code.
func (e *Engine) Wait(ctx context.Context, ref string, cond WaitCondition) (int, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return 0, err
	}
	ct.mu.Lock()
	changed := ct.changed
	ct.mu.Unlock()
	first := true
	for {
		c := ct.snapshot()
		switch cond {
		case WaitRemoved:
			if c.State == Removed {
				return c.ExitCode, nil
			}
		case WaitNextExit:
			if !first && (c.State == Stopped || c.State == Removed || c.State == Restarting) {
				return c.ExitCode, nil
			}
		default:
			if c.State == Stopped || c.State == Created || c.State == Removed {
				return c.ExitCode, nil
			}
		}
		first = false
		select {
		case <-changed:
			ct.mu.Lock()
			changed = ct.changed
			ct.mu.Unlock()
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// WaitExit waits until the exit at time at (from an attach) is recorded, or the
// container is removed, and returns the container's record.
func (e *Engine) WaitExit(ctx context.Context, ref string, at time.Time) (*Container, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	for {
		ct.mu.Lock()
		c, changed := ct.rec.Load(), ct.changed
		ct.mu.Unlock()
		if c.State == Removed || !c.FinishedAt.Before(at) {
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Watch returns the record of the container ref names and a channel closed at its next
// change (of state, or of health).
func (e *Engine) Watch(ref string) (*Container, <-chan struct{}, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.rec.Load(), ct.changed, nil
}

// task returns the running task of the container ref names.
func (e *Engine) task(ref string) (*Container, rt.Task, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	c := ct.rec.Load()
	if ct.task == nil || (c.State != Running && c.State != Paused && c.State != Stopping) {
		return nil, nil, &StateError{Name: c.Name, State: c.State, Verb: "reach the process of"}
	}
	return c, ct.task, nil
}

// Attach connects streams to the running container's process until it exits, and
// returns its exit status if it did.
func (e *Engine) Attach(ctx context.Context, ref string, s rt.Streams) (*rt.ExitStatus, error) {
	_, task, err := e.task(ref)
	if err != nil {
		return nil, err
	}
	return task.Attach(ctx, s)
}

// Resize sets the size of the container's terminal.
func (e *Engine) Resize(ctx context.Context, ref string, rows, cols uint16) error {
	_, task, err := e.task(ref)
	if err != nil {
		return err
	}
	return task.Resize(ctx, rows, cols)
}

// Exec runs a process in the running container and returns its exit code.
func (e *Engine) Exec(ctx context.Context, ref string, cfg *rt.ExecConfig, s rt.Streams, resize <-chan [2]uint16) (int, error) {
	c, task, err := e.task(ref)
	if err != nil {
		return 0, err
	}
	if len(cfg.Args) == 0 {
		return 0, errdefs.Invalid(errors.New("exec: no command"))
	}
	if cfg.Cwd == "" {
		cfg.Cwd = c.WorkingDir
	}
	if cfg.User == "" {
		cfg.User = c.User
	}
	cfg.Env = mergeEnv(c.Env, cfg.Env)
	st, err := task.Exec(ctx, cfg, s, resize)
	if err != nil {
		return 0, err
	}
	return st.Code, nil
}

// Stats reports the running container's resource use.
func (e *Engine) Stats(ctx context.Context, ref string) (*rt.Stats, error) {
	_, task, err := e.task(ref)
	if err != nil {
		return nil, err
	}
	return task.Stats(ctx)
}

// Logs reads the container's output; with follow, until it stops running.
func (e *Engine) Logs(ctx context.Context, ref string, opts logs.ReadOptions, fn func(logs.Entry) error) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c := ct.snapshot()
	if opts.Follow {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				ct.mu.Lock()
				s, changed := ct.rec.Load().State, ct.changed
				ct.mu.Unlock()
				if s != Running && s != Paused && s != Starting && s != Stopping && s != Restarting {
					return
				}
				select {
				case <-changed:
				case <-ctx.Done():
					return
				}
			}
		}()
		opts.Done = done
	}
	err = logs.Read(ctx, e.logDir(c.ID), opts, fn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // never started: no output yet
	}
	return err
}

// RuntimeSpec is the runtime's description of container ref (for runc, its OCI
// config.json), indented.
func (e *Engine) RuntimeSpec(ctx context.Context, ref string) ([]byte, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	c := ct.snapshot()
	runtime := e.runtimes[c.Runtime]
	if runtime == nil {
		return nil, errdefs.Invalid(fmt.Errorf("unknown runtime %q", c.Runtime))
	}
	// A container never started has no spec yet: it is made as a start would make it,
	// which reads users and groups in the root filesystem.
	fs, err := e.images.Rootfs(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	cfg, err := e.runtimeConfig(c, fs.Path)
	if err != nil {
		return nil, err
	}
	data, err := runtime.Describe(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// LogFile is the file of a container's output the tree shows: "output" (both streams as
// they came), "stdout" or "stderr". It may not exist before the first start.
func (e *Engine) LogFile(ref, which string) (string, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return "", err
	}
	switch which {
	case "output", "stdout", "stderr":
	default:
		return "", errdefs.Invalid(fmt.Errorf("no log stream %q", which))
	}
	return filepath.Join(e.logDir(ct.snapshot().ID), which), nil
}

// ReportError records a failure of an operation on a container made outside the engine
// (a write to the tree): it becomes the container's error and an event. For a name with
// no container (a spec that never applied), only the event says it. A nil failure
// clears the container's error (the operation succeeded since).
func (e *Engine) ReportError(ref string, failure error) {
	ct, err := e.lookup(ref)
	if err != nil {
		if failure != nil {
			e.events.publish(Event{Type: "container", Action: "error", Name: ref, Attributes: map[string]string{"error": failure.Error()}})
		}
		return
	}
	msg := ""
	if failure != nil {
		msg = failure.Error()
	}
	ct.mu.Lock()
	next := *ct.rec.Load()
	changed := next.Error != msg
	next.Error = msg
	if changed && e.persist(&next) == nil {
		ct.rec.Store(&next)
	}
	ct.mu.Unlock()
	if failure != nil {
		e.publishContainer(&next, "error", map[string]string{"error": msg})
	}
}

// DataRoot is the directory the engine keeps its state in.
func (e *Engine) DataRoot() string { return e.cfg.DataRoot }

// TreeDir is the tree's backing directory: the files people keep in the tree (spec
// files, and the directories a spec's relative binds name).
func (e *Engine) TreeDir() string { return filepath.Join(e.cfg.DataRoot, "tree") }

// Rootfs returns where container ref's root filesystem is, mounting it if it is not (a
// stopped container's is not): the tree shows it as containers/NAME/rootfs/. It stays
// mounted until the container next starts, stops or goes.
func (e *Engine) Rootfs(ctx context.Context, ref string) (string, error) {
	ct, err := e.lookup(ref)
	if err != nil {
		return "", err
	}
	c := ct.snapshot()
	if c.State == Removing || c.State == Removed {
		return "", errdefs.NotFound(fmt.Errorf("no such container: %s", ref))
	}
	fs, err := e.images.Rootfs(ctx, c.ID)
	if err != nil {
		return "", err
	}
	return fs.Path, nil
}

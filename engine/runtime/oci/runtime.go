//go:build linux

package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Runtime runs containers with runc, each under a shim.
//
// Under its root directory:
//
//	runc/            runc's own state (runc --root), apart from other runc users
//	containers/<id>/ the bundle (config.json, hostname, hosts) and the shim's state
//	                 (shim.json, shim.log, runc.log, pid, exit.json)
type Runtime struct {
	root string
	runc string
	self string
	logs logs.Options
	log  *slog.Logger

	// spare is a shim started ahead of need, so that starting a container does not wait
	// for one to come up.
	spareMu sync.Mutex
	spare   *shim.Spare
	closed  bool
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithRunc sets the runc binary (default: runc from PATH).
func WithRunc(path string) Option {
	return func(r *Runtime) {
		if path != "" {
			r.runc = path
		}
	}
}

// WithShim sets the binary run as `BINARY shim` (default: this process's own binary).
func WithShim(self string) Option {
	return func(r *Runtime) {
		if self != "" {
			r.self = self
		}
	}
}

// WithLogs caps containers' logs.
func WithLogs(o logs.Options) Option { return func(r *Runtime) { r.logs = o } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// New returns the runtime keeping its state under root.
func New(root string, opts ...Option) (*Runtime, error) {
	r := &Runtime{root: root, runc: "runc", log: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	if r.self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		r.self = self
	}
	for _, d := range []string{r.runcRoot(), filepath.Join(root, "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// A process exec'd with a terminal is started by runc detached (runc passes a
	// terminal on only then); as a subreaper this process stays its parent and gets its
	// exit status. Only such processes are orphaned to it: everything else it starts,
	// it waits for.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a subreaper: %w", err)
	}
	r.refill()
	return r, nil
}

// refill starts a spare shim if there is none.
func (r *Runtime) refill() {
	r.spareMu.Lock()
	defer r.spareMu.Unlock()
	if r.spare != nil || r.closed {
		return
	}
	sp, err := shim.StartSpare(r.self)
	if err != nil {
		r.log.Warn("start a spare shim", "err", err)
		return
	}
	r.spare = sp
}

// refillDelay is how long after taking the spare the next one starts: not at once, where
// it would compete for the CPU with the container starting.
const refillDelay = 300 * time.Millisecond

// takeSpare returns the spare shim (nil if there is none) and starts the next one soon.
func (r *Runtime) takeSpare() *shim.Spare {
	r.spareMu.Lock()
	sp := r.spare
	r.spare = nil
	r.spareMu.Unlock()
	time.AfterFunc(refillDelay, r.refill)
	return sp
}

// Close ends the spare shim. Containers keep running under theirs.
func (r *Runtime) Close() error {
	r.spareMu.Lock()
	defer r.spareMu.Unlock()
	r.closed = true
	if r.spare != nil {
		r.spare.Close()
		r.spare = nil
	}
	return nil
}

// Name is "oci".
func (r *Runtime) Name() string { return "oci" }

func (r *Runtime) runcRoot() string        { return filepath.Join(r.root, "runc") }
func (r *Runtime) dir(id string) string    { return filepath.Join(r.root, "containers", id) }
func (r *Runtime) bundle(id string) string { return filepath.Join(r.dir(id), "bundle") }

// cgroupsPath is where a container's cgroup lives in every hierarchy.
func cgroupsPath(id string) string { return "/dutchman/" + id }

// Create writes the container's bundle and starts its shim, which creates the container.
func (r *Runtime) Create(ctx context.Context, cfg *rt.Config, logDir string) (rt.Task, error) {
	dir, bundle := r.dir(cfg.ID), r.bundle(cfg.ID)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, err
	}
	hostname := filepath.Join(bundle, "hostname")
	hosts := filepath.Join(bundle, "hosts")
	if err := os.WriteFile(hostname, []byte(cfg.Hostname+"\n"), 0o644); err != nil {
		return nil, err
	}
	if cfg.HostsFile != "" {
		hosts = cfg.HostsFile
	} else {
		hostsData := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + cfg.Hostname + "\n"
		if err := os.WriteFile(hosts, []byte(hostsData), 0o644); err != nil {
			return nil, err
		}
	}
	spec, err := Spec(cfg, SpecOptions{CgroupsPath: cgroupsPath(cfg.ID), HostnameFile: hostname, HostsFile: hosts, ResolvConf: cfg.ResolvConf})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	scfg := &shim.Config{
		ID: cfg.ID, Bundle: bundle, Runc: r.runc, RuncRoot: r.runcRoot(), LogDir: logDir, Logs: r.logs,
		Tty: cfg.Tty, Stdin: cfg.OpenStdin, CgroupsPath: cgroupsPath(cfg.ID), ConsoleSize: cfg.ConsoleSize,
	}
	err = errors.New("no spare shim")
	if sp := r.takeSpare(); sp != nil {
		if err = sp.Use(ctx, dir, scfg); err != nil {
			r.log.Warn("spare shim failed; starting another", "err", err)
		}
	}
	if err != nil {
		if err := shim.Spawn(ctx, r.self, dir, scfg); err != nil {
			return nil, createError(err)
		}
	}
	return r.newTask(cfg.ID, cfg.Rootfs, 0, nil), nil
}

// createError gives a failed create its kind: a command that cannot run is the user's
// doing, not the engine's.
func createError(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") ||
		strings.Contains(msg, "permission denied") || strings.Contains(msg, "not a directory") {
		return errdefs.Invalid(err)
	}
	return err
}

// Describe returns the config.json of container cfg.ID: the bundle's while the
// container exists, else the one Create would write.
func (r *Runtime) Describe(ctx context.Context, cfg *rt.Config) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(r.bundle(cfg.ID), "config.json"))
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	bundle := r.bundle(cfg.ID)
	hosts := filepath.Join(bundle, "hosts")
	if cfg.HostsFile != "" {
		hosts = cfg.HostsFile
	}
	spec, err := Spec(cfg, SpecOptions{CgroupsPath: cgroupsPath(cfg.ID),
		HostnameFile: filepath.Join(bundle, "hostname"), HostsFile: hosts, ResolvConf: cfg.ResolvConf})
	if err != nil {
		return nil, err
	}
	return json.Marshal(spec)
}

// Load reconnects to the shim of container id. If the shim is gone, the task reports
// the exit the shim recorded, or, when there is none (the shim was killed, the machine
// restarted), exit code 255.
func (r *Runtime) Load(ctx context.Context, id, logDir string) (rt.Task, error) {
	dir := r.dir(id)
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(r.bundle(id), "config.json"))
	if err != nil {
		return nil, errdefs.NotFound(fmt.Errorf("container %s has no runtime state: %w", id, err))
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, err
	}
	rootfs := ""
	if spec.Root != nil {
		rootfs = spec.Root.Path
	}
	client := shim.NewClient(dir)
	pid, exit, err := client.State(ctx)
	if err != nil {
		if !errors.Is(err, shim.ErrGone) {
			return nil, err
		}
		st := r.lostExit(ctx, id)
		return r.newTask(id, rootfs, 0, st), nil
	}
	if pid == 0 && exit == nil {
		// The daemon went between making the shim and starting the container: nothing
		// runs, and nothing will.
		client.Shutdown(ctx)
		return r.newTask(id, rootfs, 0, &rt.ExitStatus{Code: 128, At: nowUTC(),
			Error: "the daemon stopped before the container's process started"}), nil
	}
	return r.newTask(id, rootfs, pid, exit), nil
}

// lostExit is the exit status of a container whose shim is gone: the one it recorded,
// or 255. Whatever of the container still runs without its monitor is killed.
func (r *Runtime) lostExit(ctx context.Context, id string) *rt.ExitStatus {
	if st, err := shim.ReadExit(r.dir(id)); err == nil {
		return st
	}
	r.runcCmd(ctx, "kill", "--all", id, "KILL")
	return &rt.ExitStatus{Code: 255, Error: "the container's shim is gone (it was killed, or the machine restarted): its process was stopped", At: nowUTC()}
}

// Delete removes the container from runc and its state directory. A shim whose container
// never started is told to go.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if _, err := os.Stat(r.dir(id)); os.IsNotExist(err) {
		return nil
	}
	if _, exit, err := shim.NewClient(r.dir(id)).State(ctx); err == nil && exit == nil {
		shim.NewClient(r.dir(id)).Shutdown(ctx)
	}
	// runc removes what it made when a container without a terminal ends; only a
	// detached one (or one whose runc was killed) leaves state behind.
	if _, err := os.Stat(filepath.Join(r.runcRoot(), id)); err == nil {
		if out, err := r.runcCmd(ctx, "delete", "--force", id); err != nil && !strings.Contains(out, "does not exist") {
			return fmt.Errorf("runc delete %s: %s", id, strings.TrimSpace(out))
		}
	}
	return os.RemoveAll(r.dir(id))
}

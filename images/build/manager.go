package build

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/buildkit/client"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// Config is what a Manager needs.
type Config struct {
	// Root holds buildkitd's state (its cache of layers and build steps), its config,
	// socket and log.
	Root string
	// Binary is buildkitd; if empty, buildkitd beside Self, then on PATH.
	Binary string
	// Self is the dutchman binary.
	Self string
	// Runc is the OCI runtime buildkitd's worker runs RUN steps with ("runc" from PATH
	// if empty).
	Runc string
	// InsecureRegistries are reached over plain HTTP or unverified TLS, as the image
	// store does. Loopback registries always are.
	InsecureRegistries []string
	// Keychain gives registry credentials (default: the Docker config's, as the image
	// store's).
	Keychain authn.Keychain
	// Store receives the images built.
	Store  *images.Store
	Logger *slog.Logger
}

// Manager runs builds through a buildkitd of its own, started on first need.
type Manager struct {
	cfg Config
	log *slog.Logger

	// mu guards the daemon: starting it, its client, stopping it.
	mu     sync.Mutex
	daemon *daemon
	closed bool
	// binfmtMu serialises the registering of foreign platforms' interpreters.
	binfmtMu sync.Mutex
	// spawn runs functions on one OS thread that lives as long as the process:
	// buildkitd's parent-death signal follows the thread that started it, and Go ends
	// threads that goroutines leave locked (network namespace switches do).
	spawn chan func()
}

// daemon is a running buildkitd.
type daemon struct {
	cmd    *exec.Cmd
	client *client.Client
	// exited closes when the process has been waited for; err is its exit then.
	exited chan struct{}
	err    error
}

// New returns a manager; buildkitd starts with the first build.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// What builds a daemon killed on its way left: spooled results, inline Dockerfiles.
	for _, pattern := range []string{"result-*.tar", "inline-*"} {
		leftovers, _ := filepath.Glob(filepath.Join(cfg.Root, pattern))
		for _, l := range leftovers {
			os.RemoveAll(l)
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, spawn: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range m.spawn {
			f()
		}
	}()
	return m
}

// onSpawnThread runs f on the manager's own thread.
func (m *Manager) onSpawnThread(f func()) {
	done := make(chan struct{})
	m.spawn <- func() {
		defer close(done)
		f()
	}
	<-done
}

// Files under Root.
const (
	configFile = "buildkitd.toml"
	logFile    = "buildkitd.log"
	socketFile = "buildkitd.sock"
	stateDir   = "state"
	// maxSocketPath is what a unix socket's path may hold (sun_path, less its NUL).
	maxSocketPath = 107
)

// socketPath is buildkitd's socket: under Root, or when Root is too deep for a socket's
// path, beside the daemon's own socket.
func (m *Manager) socketPath() string {
	p := filepath.Join(m.cfg.Root, socketFile)
	if len(p) <= maxSocketPath {
		return p
	}
	h := fnv.New32a()
	h.Write([]byte(m.cfg.Root))
	return filepath.Join(fsutil.RuntimeDir(), fmt.Sprintf("buildkitd-%08x.sock", h.Sum32()))
}

// ownSocket checks that p is a socket of this process's user in a directory of his
// that no one else may write to: the client hands buildkitd registry credentials and
// secrets.
func ownSocket(p string) error {
	for _, c := range []struct {
		path string
		dir  bool
	}{{filepath.Dir(p), true}, {p, false}} {
		st, err := os.Lstat(c.path)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		switch {
		case !ok || int(sys.Uid) != os.Geteuid():
			return fmt.Errorf("%s is not this user's", c.path)
		case c.dir && (!st.IsDir() || st.Mode().Perm()&0o022 != 0):
			return fmt.Errorf("%s is not a directory only its owner writes to", c.path)
		case !c.dir && st.Mode()&os.ModeSocket == 0:
			return fmt.Errorf("%s is not a socket", c.path)
		}
	}
	return nil
}

// binary finds buildkitd.
func (m *Manager) binary() (string, error) {
	if m.cfg.Binary != "" {
		if _, err := os.Stat(m.cfg.Binary); err != nil {
			return "", errdefs.Unavailable(fmt.Errorf("buildkitd: %w (the daemon's --buildkitd)", err))
		}
		return m.cfg.Binary, nil
	}
	if m.cfg.Self != "" {
		p := filepath.Join(filepath.Dir(m.cfg.Self), "buildkitd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("buildkitd")
	if err != nil {
		return "", errdefs.Unavailable(errors.New("buildkitd was not found beside dutchman or on PATH: `make buildkitd` builds it into bin/, or pass --buildkitd PATH to the daemon"))
	}
	return p, nil
}

// config is buildkitd's TOML config.
func (m *Manager) config(socket string) string {
	runc := m.cfg.Runc
	if runc == "" {
		runc = "runc"
	}
	if p, err := exec.LookPath(runc); err == nil {
		runc = p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by the dutchman daemon at each start of buildkitd; edits are lost.\n")
	fmt.Fprintf(&b, "root = %s\n\n[grpc]\n  address = [%s]\n\n", strconv.Quote(filepath.Join(m.cfg.Root, stateDir)), strconv.Quote("unix://"+socket))
	// RUN steps share the host's network (docker build --network=host): no CNI setup,
	// and nothing left behind. Builds for a user other than root get none (build.go).
	fmt.Fprintf(&b, "[worker.oci]\n  enabled = true\n  binary = %s\n  networkMode = \"host\"\n  gc = true\n\n", strconv.Quote(runc))
	fmt.Fprintf(&b, "[worker.containerd]\n  enabled = false\n")
	for _, h := range m.cfg.InsecureRegistries {
		fmt.Fprintf(&b, "\n[registry.%s]\n  http = true\n  insecure = true\n", strconv.Quote(h))
	}
	return b.String()
}

// Client returns the client of a running buildkitd, starting it if needed.
func (m *Manager) Client(ctx context.Context) (*client.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errdefs.Unavailable(errors.New("the engine is closing"))
	}
	if d := m.daemon; d != nil {
		select {
		case <-d.exited:
			m.log.Warn("buildkitd exited; starting it again", "err", d.err, "log", logTail(filepath.Join(m.cfg.Root, logFile)))
			d.client.Close()
			m.daemon = nil
		default:
			return d.client, nil
		}
	}
	d, err := m.start(ctx)
	if err != nil {
		return nil, err
	}
	m.daemon = d
	return d.client, nil
}

// start starts buildkitd and waits until it serves and lists a worker.
func (m *Manager) start(ctx context.Context) (*daemon, error) {
	bin, err := m.binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(m.cfg.Root, stateDir), 0o700); err != nil {
		return nil, err
	}
	// What a buildkitd killed with the daemon left: its mounts lived in its own
	// namespace, but a socket file remains.
	socket := m.socketPath()
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	os.Remove(socket)
	cfgPath := filepath.Join(m.cfg.Root, configFile)
	if err := os.WriteFile(cfgPath, []byte(m.config(socket)), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(m.cfg.Root, logFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	self := m.cfg.Self
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	cmd := command(self, filepath.Dir(m.cfg.Root), m.cfg.Root, bin, "--config", cfgPath)
	cmd.Dir = m.cfg.Root
	cmd.Stdout, cmd.Stderr = logf, logf
	// buildkitd's own temporary files stay under its root.
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(m.cfg.Root, stateDir))
	start := time.Now()
	m.onSpawnThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start buildkitd: %w", err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	if err := m.waitReady(ctx, d, socket); err != nil {
		m.stop(d)
		return nil, fmt.Errorf("buildkitd did not start: %w (its log: %s)", err, logPath)
	}
	m.log.Info("buildkitd started", "pid", cmd.Process.Pid, "took", time.Since(start).Round(time.Millisecond), "root", m.cfg.Root)
	return d, nil
}

// readyTimeout bounds buildkitd's start: it is ready in well under a second here.
const readyTimeout = 60 * time.Second

func (m *Manager) waitReady(ctx context.Context, d *daemon, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		select {
		case <-d.exited:
			return fmt.Errorf("it exited (%v)", d.err)
		case <-ctx.Done():
			return fmt.Errorf("no socket at %s: %w", socket, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := ownSocket(socket); err != nil {
		return err
	}
	c, err := client.New(ctx, "unix://"+socket)
	if err != nil {
		return err
	}
	for {
		ws, err := c.ListWorkers(ctx)
		if err == nil && len(ws) > 0 {
			d.client = c
			return nil
		}
		select {
		case <-d.exited:
			c.Close()
			return fmt.Errorf("it exited (%v)", d.err)
		case <-ctx.Done():
			c.Close()
			if err == nil {
				err = errors.New("it lists no worker")
			}
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopGrace is how long buildkitd has to end its builds and exit after SIGTERM.
const stopGrace = 10 * time.Second

// stop ends buildkitd: SIGTERM, then SIGKILL after stopGrace.
func (m *Manager) stop(d *daemon) {
	start := time.Now()
	if d.client != nil {
		d.client.Close()
	}
	terminate(d.cmd.Process)
	select {
	case <-d.exited:
	case <-time.After(stopGrace):
		m.log.Warn("buildkitd did not exit after SIGTERM; killing it", "log", logTail(filepath.Join(m.cfg.Root, logFile)))
		d.cmd.Process.Kill()
		<-d.exited
	}
	os.Remove(m.socketPath())
	m.log.Info("buildkitd stopped", "took", time.Since(start).Round(time.Millisecond))
}

// Running reports whether buildkitd runs, and its pid.
func (m *Manager) Running() (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.daemon; d != nil {
		select {
		case <-d.exited:
		default:
			return d.cmd.Process.Pid, true
		}
	}
	return 0, false
}

// Describe says which buildkitd builds, and whether it runs, for `dutchman info`.
func (m *Manager) Describe() string {
	bin, err := m.binary()
	if err != nil {
		return "none: " + err.Error()
	}
	if pid, ok := m.Running(); ok {
		return fmt.Sprintf("%s (running, pid %d)", bin, pid)
	}
	return bin + " (started by the first build)"
}

// Close stops buildkitd; builds fail from then on.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		close(m.spawn)
	}
	m.closed = true
	if m.daemon != nil {
		m.stop(m.daemon)
		m.daemon = nil
	}
	return nil
}

// logTail is the end of buildkitd's log, for the daemon's own when buildkitd fails.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 2048
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

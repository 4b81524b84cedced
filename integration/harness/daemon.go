//go:build linux

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the dutchman binary under test: $DUTCHMAN_BIN if set (make test sets
// it, and builds dutchman-agent beside it), else one built from this checkout into the
// process's directory, with dutchman-agent.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("DUTCHMAN_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binPath = filepath.Join(processDir, "dutchman")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/dutchman")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// The vm runtime's guest agent goes beside it, where the daemon looks.
		cmd = exec.Command("go", "build", "-o", filepath.Join(processDir, "dutchman-agent"), "./cmd/dutchman-agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// Daemon is a `dutchman daemon` run by a test, with its own data root and socket.
type Daemon struct {
	Dir      string
	DataRoot string
	Socket   string
	LogPath  string
	// Tree is where the daemon mounts the tree, "" for nowhere (WithTree).
	Tree string
	Env  []string
	Args []string
	// HideKVM runs the daemon where /dev/kvm cannot be opened (WithoutKVM).
	HideKVM bool
	shared  bool
	cmd     *exec.Cmd
	waited  chan struct{}
	exitErr error
	t       testing.TB
}

// DaemonOption configures StartDaemon.
type DaemonOption func(*Daemon)

// WithArgs adds daemon flags.
func WithArgs(args ...string) DaemonOption {
	return func(d *Daemon) { d.Args = append(d.Args, args...) }
}

// WithEnv adds environment variables (KEY=VALUE) for the daemon.
func WithEnv(env ...string) DaemonOption {
	return func(d *Daemon) { d.Env = append(d.Env, env...) }
}

// WithDataRoot uses dir as the data root (to run a second daemon on the same one).
func WithDataRoot(dir string) DaemonOption {
	return func(d *Daemon) { d.DataRoot = dir }
}

// WithTree has the daemon mount the tree, on a directory of the test's.
func WithTree() DaemonOption {
	return func(d *Daemon) { d.Tree = filepath.Join(d.Dir, "tree") }
}

// WithoutKVM runs the daemon as on a host without KVM: in a mount namespace of its own
// where /dev/kvm is on a nodev mount, so that opening it fails for the daemon and all it
// starts (QEMU included), and nothing else. Setting DUTCHMAN_TEST_HIDE_KVM=1 in the
// environment does it for every daemon of the tests, to run the whole suite so.
func WithoutKVM() DaemonOption {
	return func(d *Daemon) { d.HideKVM = true }
}

// hideKVMScript makes /dev/kvm unopenable in the daemon's mount namespace, then runs it.
const hideKVMScript = `if [ -e /dev/kvm ]; then mount --bind /dev/kvm /dev/kvm && mount -o remount,bind,nodev /dev/kvm || exit 125; fi; exec "$0" "$@"`

// command is the daemon's command line: the binary, or, hiding KVM, the binary run by
// unshare(1) in a mount namespace whose mounts below the test's directory are shared
// with the test's (so that the test sees the tree), and whose /dev is made private there
// before /dev/kvm is hidden.
func (d *Daemon) command(args []string) (*exec.Cmd, error) {
	if !d.HideKVM {
		return exec.Command(Binary(d.t), args...), nil
	}
	if !d.shared {
		if err := unix.Mount(d.Dir, d.Dir, "", unix.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("bind %s: %w", d.Dir, err)
		}
		if err := unix.Mount("", d.Dir, "", unix.MS_SHARED, ""); err != nil {
			return nil, fmt.Errorf("make %s shared: %w", d.Dir, err)
		}
		d.shared = true
	}
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "unchanged", "--", "sh", "-c",
		"mount --make-private /dev && " + hideKVMScript, Binary(d.t)}, args...)...), nil
}

// NewDaemon prepares a daemon without starting it.
func NewDaemon(t testing.TB, opts ...DaemonOption) *Daemon {
	t.Helper()
	dir := Dir(t)
	d := &Daemon{Dir: dir, DataRoot: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "dutchman.sock"),
		LogPath: filepath.Join(dir, "daemon.log"), t: t}
	d.HideKVM = os.Getenv("DUTCHMAN_TEST_HIDE_KVM") == "1"
	for _, o := range opts {
		o(d)
	}
	return d
}

// StartDaemon starts a daemon for test t, waits until its API answers, and stops it
// when t ends.
func StartDaemon(t testing.TB, opts ...DaemonOption) *Daemon {
	t.Helper()
	d := NewDaemon(t, opts...)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.RemoveContainers()
		if err := d.Stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return d
}

// RemoveContainers removes every container of a running daemon, which takes their
// networks down (addresses, published ports, firewall rules) as a test's end should;
// runc delete, in the harness's cleanup, would leave those behind.
func (d *Daemon) RemoveContainers() {
	if d.cmd == nil {
		return
	}
	ids := strings.Fields(d.Run("ps", "-aq").Stdout)
	if len(ids) > 0 {
		d.Run(append([]string{"rm", "-f"}, ids...)...)
	}
}

// Start runs the daemon and waits for its socket to answer.
func (d *Daemon) Start() error {
	cfg := filepath.Join(d.Dir, "daemon.json")
	if _, err := os.Stat(cfg); os.IsNotExist(err) {
		if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
			return err
		}
	}
	args := append([]string{"daemon", "--data-root", d.DataRoot, "--socket", d.Socket, "--mount", d.Tree,
		"--config", filepath.Join(d.Dir, "daemon.json"), "--log-level", "debug"}, d.Args...)
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd, err := d.command(args)
	if err != nil {
		return err
	}
	cmd.Dir = d.Dir // relative paths in Args are the test directory's
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	d.waited = make(chan struct{})
	go func() { d.exitErr = cmd.Wait(); close(d.waited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.waited:
			return fmt.Errorf("daemon exited at start (%v): %s", d.exitErr, d.Log())
		default:
		}
		// The API answers once the tree is mounted.
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Kill()
	return fmt.Errorf("daemon did not answer on %s: %s", d.Socket, d.Log())
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(15 * time.Second):
		// SIGQUIT: Go prints every goroutine's stack, which says where it hangs.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.waited:
			d.cmd = nil
		case <-time.After(5 * time.Second):
			d.Kill()
		}
		return fmt.Errorf("daemon did not stop within 15s of SIGTERM: %s", d.Log())
	}
	d.cmd = nil
	if d.exitErr != nil {
		return fmt.Errorf("daemon exited with %v: %s", d.exitErr, d.Log())
	}
	if strings.Contains(d.Log(), "WARNING: DATA RACE") {
		return fmt.Errorf("the race detector found a data race in the daemon: %s", d.Log())
	}
	return nil
}

// Kill stops the daemon with SIGKILL.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.waited
	d.cmd = nil
}

// Log is what the daemon has logged.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Host is the DUTCHMAN_HOST value of this daemon.
func (d *Daemon) Host() string { return "unix://" + d.Socket }

// Result is what a CLI run printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the CLI against this daemon with a 2-minute limit.
func (d *Daemon) Run(args ...string) Result {
	return d.RunStdin(nil, args...)
}

// RunStdin runs the CLI with stdin.
func (d *Daemon) RunStdin(stdin []byte, args ...string) Result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(d.t), args...)
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("run dutchman %v: %v", args, err)
	}
	return r
}

// MustRun runs the CLI and fails the test unless it exits 0.
func (d *Daemon) MustRun(args ...string) string {
	d.t.Helper()
	r := d.Run(args...)
	if r.Code != 0 {
		d.t.Fatalf("dutchman %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

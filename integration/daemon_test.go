//go:build linux

package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func TestSecondDaemonOnOneDataRootIsRefused(t *testing.T) {
	first := harness.StartDaemon(t)
	second := harness.NewDaemon(t, harness.WithDataRoot(first.DataRoot))
	err := second.Start()
	if err == nil {
		second.Stop()
		t.Fatal("a second daemon started on the same data root")
	}
	if !strings.Contains(err.Error(), "data root is in use by another daemon") || !strings.Contains(err.Error(), "pid ") {
		t.Errorf("second daemon: %v; want a clear refusal naming the holder's pid", err)
	}
	// The first is unharmed.
	first.MustRun("images")
}

// TestDaemonTakesRelativePaths runs a container on a daemon given its data root and
// socket as relative paths: runc and the shim, which run elsewhere, get absolute ones.
func TestDaemonTakesRelativePaths(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t, harness.WithArgs("--data-root", "root", "--socket", "dutchman.sock"))
	if got := d.MustRun("run", "--rm", ims.Busybox, "echo", "ran"); got != "ran\n" {
		t.Errorf("run on a daemon with a relative data root: %q", got)
	}
	if !strings.Contains(d.Log(), "data-root="+d.DataRoot) {
		t.Errorf("the daemon did not make its data root absolute (%s):\n%s", d.DataRoot, d.Log())
	}
}

func TestDaemonStopsCleanlyAndStartsAgain(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.NewDaemon(t)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	d.MustRun("pull", ims.Busybox)
	if err := d.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
	if !strings.Contains(d.Log(), "dutchman daemon stopped") {
		t.Errorf("log lacks the stop:\n%s", d.Log())
	}
	// The data root is the owner's only, and is made so again at start.
	os.Chmod(d.DataRoot, 0o755)
	// The lock is free and the state kept.
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if out := d.MustRun("images", "-q"); strings.TrimSpace(out) == "" {
		t.Error("the pulled image is gone after a restart")
	}
	for _, dir := range []string{d.DataRoot, filepath.Join(d.DataRoot, "images")} {
		if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700 (unpacked images hold setuid files)", dir, info.Mode().Perm(), err)
		}
	}
}

func TestDaemonReplacesAStaleSocket(t *testing.T) {
	d := harness.NewDaemon(t)
	// A socket file nobody listens on, as a killed daemon leaves it.
	l, err := net.Listen("unix", d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := d.Start(); err != nil {
		t.Fatalf("start over a stale socket: %v", err)
	}
	defer d.Stop()
	d.MustRun("info")

	// A socket a live daemon answers on is not taken over.
	other := harness.NewDaemon(t, harness.WithArgs("--socket", d.Socket))
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), "in use by another daemon") {
		other.Stop()
		t.Errorf("a second daemon on a live socket: %v", err)
	}
}

func TestDaemonConfigFile(t *testing.T) {
	cases := []struct {
		config string
		words  string
	}{
		{`{"data-root": `, "config file"},
		{`{"insecure-registry": ["x"]}`, `unknown field "insecure-registry"`},
		{`{"storage-driver": "zfs"}`, `unknown storage driver "zfs"`},
		{`{"max-concurrent-downloads": "many"}`, "cannot unmarshal"},
	}
	for _, c := range cases {
		d := harness.NewDaemon(t)
		os.WriteFile(filepath.Join(d.Dir, "daemon.json"), []byte(c.config), 0o644)
		err := d.Start()
		if err == nil {
			d.Stop()
			t.Errorf("config %s: the daemon started", c.config)
			continue
		}
		if !strings.Contains(err.Error(), c.words) {
			t.Errorf("config %s: %v; want it to say %q", c.config, err, c.words)
		}
	}

	if err := harness.NewDaemon(t, harness.WithArgs("--log-level", "loud")).Start(); err == nil || !strings.Contains(err.Error(), `log level "loud"`) {
		t.Errorf("--log-level loud: %v", err)
	}

	// Settings from the file apply, and flags override them.
	d := harness.NewDaemon(t)
	os.WriteFile(filepath.Join(d.Dir, "daemon.json"),
		[]byte(`{"insecure-registries": ["registry.test:5000"], "storage-driver": "copy"}`), 0o644)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	out := d.MustRun("info")
	d.Stop()
	if !strings.Contains(out, "Insecure registries: registry.test:5000") || !strings.Contains(out, "Storage driver: copy") {
		t.Errorf("info does not show the config file's settings:\n%s", out)
	}
	d2 := harness.NewDaemon(t, harness.WithArgs("--storage-driver", "overlay"))
	os.WriteFile(filepath.Join(d2.Dir, "daemon.json"), []byte(`{"storage-driver": "copy"}`), 0o644)
	if err := d2.Start(); err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	if out := d2.MustRun("info"); !strings.Contains(out, "Storage driver: overlay") {
		t.Errorf("the flag did not override the file:\n%s", out)
	}
}

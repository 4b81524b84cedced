package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// daemonConfig is the daemon's configuration: defaults, then the config file, then flags.
type daemonConfig struct {
	DataRoot               string   `json:"data-root,omitempty"`
	Mount                  *string  `json:"mount,omitempty"`
	Socket                 string   `json:"socket,omitempty"`
	InsecureRegistries     []string `json:"insecure-registries,omitempty"`
	MaxConcurrentDownloads int      `json:"max-concurrent-downloads,omitempty"`
	StorageDriver          string   `json:"storage-driver,omitempty"`
	LogLevel               string   `json:"log-level,omitempty"`
	VMAgent                string   `json:"vm-agent,omitempty"`
	VMKernel               string   `json:"vm-kernel,omitempty"`
	VMRootfs               string   `json:"vm-rootfs,omitempty"`
	VMAccel                string   `json:"vm-accel,omitempty"`
	Buildkitd              string   `json:"buildkitd,omitempty"`
	// FuseDebug logs every request the tree serves (a flag only).
	FuseDebug bool `json:"-"`
}

func isRoot() bool { return os.Geteuid() == 0 }

// defaultDataRoot: /var/lib/dutchman as root, $XDG_DATA_HOME/dutchman otherwise.
func defaultDataRoot() string {
	if isRoot() {
		return "/var/lib/dutchman"
	}
	return filepath.Join(xdgDir("XDG_DATA_HOME", ".local/share"), "dutchman")
}

// defaultSocket: /run/dutchman/dutchman.sock as root, $XDG_RUNTIME_DIR/dutchman.sock
// otherwise.
func defaultSocket() string { return filepath.Join(fsutil.RuntimeDir(), "dutchman.sock") }

// defaultConfigFile: /etc/dutchman/daemon.json as root, $XDG_CONFIG_HOME/dutchman/daemon.json
// otherwise.
func defaultConfigFile() string {
	if isRoot() {
		return "/etc/dutchman/daemon.json"
	}
	return filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "dutchman", "daemon.json")
}

// defaultMount: ~/FlyingDutchman of the user running the daemon, or of $SUDO_USER.
func defaultMount() string {
	home, _ := os.UserHomeDir()
	if name := os.Getenv("SUDO_USER"); name != "" && isRoot() {
		if u, err := user.Lookup(name); err == nil {
			home = u.HomeDir
		}
	}
	return filepath.Join(home, "FlyingDutchman")
}

func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, fallback)
}

// loadConfigFile reads path into c. A missing file is fine unless required (named on the
// command line); unknown keys are errors, so a typo is never silently ignored.
func loadConfigFile(path string, required bool, c *daemonConfig) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// defaultHost is the daemon address the CLI uses without --host or DUTCHMAN_HOST.
func defaultHost() string { return "unix://" + defaultSocket() }

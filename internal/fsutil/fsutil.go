// Package fsutil holds the file-system helpers more than one store needs.
package fsutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// RemoveTree removes dir and everything below it, read-only directories included (an
// unpacked layer, a volume's data). A missing dir is not an error. Filesystems mounted
// below dir are unmounted first, never emptied: one may be a host directory bound
// there.
func RemoveTree(dir string) error {
	if err := UnmountAll(dir); err != nil {
		return err
	}
	err := os.RemoveAll(dir)
	if err != nil {
		// Directories without write permission stop RemoveAll when not running as root.
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(dir)
	}
	return err
}

// RuntimeDir is where the daemon keeps its sockets: /run/dutchman as root, else
// $XDG_RUNTIME_DIR, else dutchman-UID in the temporary directory.
func RuntimeDir() string {
	if os.Geteuid() == 0 {
		return "/run/dutchman"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "dutchman-"+strconv.Itoa(os.Getuid()))
}

// Package fsutil holds the file-system helpers more than one store needs.
package fsutil

import (
	"io/fs"
	"os"
	"path/filepath"
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

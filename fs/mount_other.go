//go:build !linux

package fs

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// closeFuseOnExec has nothing to do where go-fuse mounts through a helper.
func closeFuseOnExec() {}

// clearStale does nothing where a stale mount cannot be told apart.
func clearStale(dir string, log *slog.Logger) error { return nil }

// detach forces dir's unmount.
func detach(dir string) error { return unix.Unmount(dir, unix.MNT_FORCE) }

//go:build !linux

package images

import "syscall"

// syncFS flushes all filesystems to disk: other systems have no per-filesystem sync.
func syncFS(string) error {
	syscall.Sync()
	return nil
}

// bootID names this boot of the machine; elsewhere than Linux it is not known, and every
// start counts as the same boot (the daemon flushes at start).
func bootID() string { return "unknown" }

//go:build !linux

package fsutil

// MountsUnder: the mounts are Linux's to list here.
func MountsUnder(dir string) ([]string, error) { return nil, nil }

// UnmountAll: see MountsUnder.
func UnmountAll(dir string) error { return nil }

// DetachFUSE does nothing here: mount namespaces are Linux's.
func DetachFUSE() error { return nil }

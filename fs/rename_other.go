//go:build !linux

package fs

import (
	"os"
	"syscall"
)

// unixRenameExchange: no swapping rename here.
const unixRenameExchange = 0

// renameFlags renames; rename(2)'s flags are Linux's.
func renameFlags(from, to string, flags uint32) error {
	if flags != 0 {
		return syscall.ENOTSUP
	}
	return os.Rename(from, to)
}

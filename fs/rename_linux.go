package fs

import "golang.org/x/sys/unix"

// unixRenameExchange is rename(2)'s flag to swap two names.
const unixRenameExchange = unix.RENAME_EXCHANGE

// renameFlags renames with rename(2)'s flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
func renameFlags(from, to string, flags uint32) error {
	if flags == 0 {
		return unix.Rename(from, to)
	}
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags))
}

package fs

import "golang.org/x/sys/unix"

// unixRenameExchange is rename(2)'s flag to swap two names.
const unixRenameExchange = unix.RENAME_EXCHANGE

package fs

import "golang.org/x/sys/unix"

const (
	xattrCreate  = unix.XATTR_CREATE
	xattrReplace = unix.XATTR_REPLACE
)

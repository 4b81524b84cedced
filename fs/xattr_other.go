//go:build !linux

package fs

// The setxattr(2) flags, as Linux and macOS number them.
const (
	xattrCreate  = 0x1
	xattrReplace = 0x2
)

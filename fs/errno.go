package fs

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// errnoTable maps kinds of error to the errno a file operation returns: the one table.
var errnoTable = []struct {
	kind  error
	errno syscall.Errno
}{
	{errdefs.ErrInvalidArgument, syscall.EINVAL},
	{errdefs.ErrNotFound, syscall.ENOENT},
	{errdefs.ErrAlreadyExists, syscall.EEXIST},
	{errdefs.ErrConflict, syscall.EBUSY},
	{errdefs.ErrUnauthorized, syscall.EACCES},
	{errdefs.ErrNoSpace, syscall.ENOSPC},
	{syscall.ENOSPC, syscall.ENOSPC},
	// The runtime could not run the container here (its VM stopped at boot): the
	// kernel's word for a program it cannot execute.
	{errdefs.ErrCannotRun, syscall.ENOEXEC},
	// A registry that does not answer: try again later.
	{errdefs.ErrUnavailable, syscall.EAGAIN},
}

// toErrno turns an engine error into an errno: the kind the engine gave it, else the
// errno it wraps, else EIO, which says too little: the error is logged.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, k := range errnoTable {
		if errors.Is(err, k.kind) {
			return k.errno
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	slog.Warn("tree: input/output error", "err", err)
	return syscall.EIO
}

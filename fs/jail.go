package fs

import (
	"context"
	"syscall"
)

// A jail runs functions with a directory as their root: on Linux, on an OS thread of
// its own whose root is that directory (unshare(CLONE_FS) and chroot), so that no path
// they resolve, through whatever symbolic links, leads out of it. The tree serves the
// directories that others can change under it through jails: a container's rootfs
// (the container's processes can swap a directory for a symbolic link to / between
// a lookup and the operation that follows), and the backing directory of the tree's
// own files (whose owner is not root).
//
// Functions run in a jail must not start goroutines that resolve paths: those run on
// other threads, with the host's root.
type jail struct {
	ops  chan func()
	done chan struct{}
}

// run runs f in the jail and returns when it has; with EINTR if ctx ends before f
// starts (once started, f writes into its caller's buffers, which must live until it
// is done), or ESTALE if the jail is closed. A nil jail runs f where it is. A panic in f
// is raised again here, where go-fuse recovers it.
func (j *jail) run(ctx context.Context, f func()) syscall.Errno {
	if j == nil {
		f()
		return 0
	}
	ran := make(chan any, 1)
	g := func() {
		defer func() { ran <- recover() }()
		f()
	}
	select {
	case j.ops <- g:
	case <-j.done:
		return syscall.ESTALE
	case <-ctx.Done():
		return syscall.EINTR
	}
	if p := <-ran; p != nil {
		panic(p)
	}
	return 0
}

// close ends the jail's thread.
func (j *jail) close() {
	if j == nil {
		return
	}
	select {
	case <-j.done:
	default:
		close(j.done)
	}
}

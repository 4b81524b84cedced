package fs

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

// run runs f in the jail and returns when it has; false if the jail is closed and f did
// not run. A nil jail runs f where it is.
func (j *jail) run(f func()) bool {
	if j == nil {
		f()
		return true
	}
	ran := make(chan struct{})
	select {
	case j.ops <- func() { defer close(ran); f() }:
		<-ran
		return true
	case <-j.done:
		return false
	}
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

package fs

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// newJail starts a jail rooted at dir.
func newJail(dir string) (*jail, error) {
	j := &jail{ops: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// The thread is never unlocked: when this goroutine ends, the runtime ends the
		// thread too, with its root.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ready <- fmt.Errorf("jail %s: unshare: %w", dir, err)
			return
		}
		if err := unix.Chroot(dir); err != nil {
			ready <- fmt.Errorf("jail %s: chroot: %w", dir, err)
			return
		}
		if err := unix.Chdir("/"); err != nil {
			ready <- fmt.Errorf("jail %s: chdir: %w", dir, err)
			return
		}
		ready <- nil
		for {
			select {
			case f := <-j.ops:
				f()
			case <-j.done:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return j, nil
}

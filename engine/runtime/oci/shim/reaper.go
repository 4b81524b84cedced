//go:build linux

package shim

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper reaps every child of the shim (runc, the container's init, orphans the shim
// inherits as subreaper) and hands exit statuses to whoever expects them. os/exec's Wait
// is never used: a reap of any child would steal its status.
type reaper struct {
	mu       sync.Mutex
	expected map[int]chan unix.WaitStatus
	early    map[int]unix.WaitStatus // reaped before anyone expected them
	sigs     chan os.Signal
}

func newReaper() *reaper {
	r := &reaper{expected: map[int]chan unix.WaitStatus{}, early: map[int]unix.WaitStatus{}, sigs: make(chan os.Signal, 32)}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go func() {
		for range r.sigs {
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.expected[pid]; ok {
			delete(r.expected, pid)
			ch <- ws
		} else {
			r.early[pid] = ws
		}
	}
}

// expect returns a channel that yields pid's exit status.
func (r *reaper) expect(pid int) <-chan unix.WaitStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expectLocked(pid)
}

func (r *reaper) expectLocked(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	if ws, ok := r.early[pid]; ok {
		delete(r.early, pid)
		ch <- ws
		return ch
	}
	r.expected[pid] = ch
	// A SIGCHLD may have come before this registration and found nothing to hand over.
	go r.reap()
	return ch
}

// wait reaps for a while: orphans that exit with the container are not left as zombies.
func (r *reaper) wait(d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case <-deadline:
			r.reap()
			return
		case <-time.After(20 * time.Millisecond):
			r.reap()
		}
	}
}

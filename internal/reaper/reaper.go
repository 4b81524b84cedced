//go:build linux

// Package reaper reaps every child of a process that is its children's subreaper or
// init (a shim, the guest agent) and hands exit statuses to whoever expects them.
package reaper

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper reaps every child of this process (the ones it started, the orphans it inherits
// as subreaper or init) and hands exit statuses to whoever expects them. os/exec's Wait
// must not be used beside it: a reap of any child would steal its status.
type Reaper struct {
	// Mu, held around the start of a child and its ExpectLocked, keeps the child from
	// being reaped before it is expected.
	Mu       sync.Mutex
	expected map[int]chan unix.WaitStatus
	early    map[int]unix.WaitStatus // reaped before anyone expected them
	sigs     chan os.Signal
}

// New starts reaping on SIGCHLD.
func New() *Reaper {
	r := &Reaper{expected: map[int]chan unix.WaitStatus{}, early: map[int]unix.WaitStatus{}, sigs: make(chan os.Signal, 32)}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go func() {
		for range r.sigs {
			r.Reap()
		}
	}()
	return r
}

// Reap reaps the children that have exited.
func (r *Reaper) Reap() {
	r.Mu.Lock()
	defer r.Mu.Unlock()
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
			if len(r.early) >= maxEarly {
				// Orphans nobody expects: forget one rather than grow without end.
				for old := range r.early {
					delete(r.early, old)
					break
				}
			}
			r.early[pid] = ws
		}
	}
}

// maxEarly bounds the statuses kept for children nobody expected yet.
const maxEarly = 4096

// Expect returns a channel that yields pid's exit status.
func (r *Reaper) Expect(pid int) <-chan unix.WaitStatus {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return r.ExpectLocked(pid)
}

// ExpectLocked is Expect with Mu held.
func (r *Reaper) ExpectLocked(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	if ws, ok := r.early[pid]; ok {
		delete(r.early, pid)
		ch <- ws
		return ch
	}
	r.expected[pid] = ch
	// A SIGCHLD may have come before this registration and found nothing to hand over.
	go r.Reap()
	return ch
}

// Wait reaps for a while: orphans that exit with the container are not left as zombies.
func (r *Reaper) Wait(d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case <-deadline:
			r.Reap()
			return
		case <-time.After(20 * time.Millisecond):
			r.Reap()
		}
	}
}

//go:build linux

package shim

import (
	"context"
	"sync"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
)

// Task is what every runtime's task does alike through its container's shim: the pid,
// waiting for the exit, attach, resize. A runtime's task embeds it and adds the rest
// (start, kill, exec, stats), which differ.
type Task struct {
	Client *Client

	mu  sync.Mutex
	pid int

	waitOnce sync.Once
	wait     chan rt.ExitStatus
	exit     *rt.ExitStatus // known already (the Load of a finished container)
	lost     func() *rt.ExitStatus
	ctx      context.Context
	cancel   context.CancelFunc
}

// NewTask returns the task of the shim whose state directory is dir, running as pid (0
// before the start) or ended with exit. lost gives the exit status when the shim goes
// without answering.
func NewTask(dir string, pid int, exit *rt.ExitStatus, lost func() *rt.ExitStatus) *Task {
	ctx, cancel := context.WithCancel(context.Background())
	return &Task{Client: NewClient(dir), pid: pid, exit: exit, lost: lost,
		wait: make(chan rt.ExitStatus, 1), ctx: ctx, cancel: cancel}
}

// Pid is the container's pid on the host, 0 before the start.
func (t *Task) Pid() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pid
}

// Started asks the shim to start the container and records its pid.
func (t *Task) Started(ctx context.Context) (int, error) {
	pid, err := t.Client.Start(ctx)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	t.pid = pid
	t.mu.Unlock()
	return pid, nil
}

// Wait yields the exit status once. The shim is asked; if it goes without answering,
// lost says.
func (t *Task) Wait() <-chan rt.ExitStatus {
	t.waitOnce.Do(func() {
		go func() {
			defer close(t.wait)
			if t.exit != nil {
				t.wait <- *t.exit
				return
			}
			st, err := t.Client.Wait(t.ctx)
			if err != nil {
				if t.ctx.Err() != nil {
					return // closed: the daemon no longer waits
				}
				st = t.lost()
			}
			t.wait <- *st
		}()
	})
	return t.wait
}

// Attach connects streams to the container's process (see rt.Task).
func (t *Task) Attach(ctx context.Context, s rt.Streams) (*rt.ExitStatus, error) {
	return t.Client.Attach(ctx, s)
}

// Resize sets the size of the container's terminal.
func (t *Task) Resize(ctx context.Context, rows, cols uint16) error {
	return t.Client.Resize(ctx, rows, cols)
}

// Close stops waiting; the container runs on.
func (t *Task) Close() error {
	t.cancel()
	return nil
}

package vm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/oci"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// task is a container in a VM, under a shim.
type task struct {
	*shim.Task
	r      *Runtime
	id     string
	rootfs string
}

func (r *Runtime) newTask(id, rootfs string, pid int, exit *rt.ExitStatus) *task {
	return &task{Task: shim.NewTask(r.dir(id), pid, exit, func() *rt.ExitStatus { return lostExit(r.dir(id)) }),
		r: r, id: id, rootfs: rootfs}
}

func nowUTC() time.Time { return time.Now().UTC() }

// Start boots the VM and starts the container's process in it; the pid is QEMU's.
func (t *task) Start(ctx context.Context) (int, error) {
	pid, err := t.Started(ctx)
	if err != nil {
		return 0, startError(err)
	}
	return pid, nil
}

// startError marks a command that cannot run as the user's doing, as the oci runtime
// does.
func startError(err error) error {
	msg := err.Error()
	for _, s := range []string{"executable file not found", "no such file or directory", "permission denied", "not a directory"} {
		if strings.Contains(msg, s) {
			return errdefs.Invalid(err)
		}
	}
	return err
}

func (t *task) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	err := t.Client.Do(ctx, opKill, killArgs{Signal: int(sig), All: all}, nil)
	if errors.Is(err, shim.ErrGone) {
		return nil // it exited: Wait reports how
	}
	return err
}

func (t *task) Pause(ctx context.Context) error  { return t.Client.Do(ctx, opPause, nil, nil) }
func (t *task) Resume(ctx context.Context) error { return t.Client.Do(ctx, opResume, nil, nil) }

// Stats are the guest's: its CPU time, memory in use and size, processes.
func (t *task) Stats(ctx context.Context) (*rt.Stats, error) {
	var st rt.Stats
	if err := t.Client.Do(ctx, opStats, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Pids are the host's processes of the container: QEMU and virtiofsd.
func (t *task) Pids(ctx context.Context) ([]int, error) {
	var pids []int
	err := t.Client.Do(ctx, opPids, nil, &pids)
	return pids, err
}

// Exec runs a process in the container through its agent, with the oci runtime's user
// resolution and environment.
func (t *task) Exec(ctx context.Context, cfg *rt.ExecConfig, s rt.Streams, resize <-chan [2]uint16) (rt.ExitStatus, error) {
	proc, err := oci.ExecProcess(t.rootfs, cfg, nil)
	if err != nil {
		return rt.ExitStatus{}, err
	}
	p := processOf(proc, 0)
	p.Stdin = s.Stdin != nil
	conn, r, err := t.Client.Open(ctx, opExec, p, &execStarted{})
	if err != nil {
		return rt.ExitStatus{}, startError(fmt.Errorf("exec: %w", err))
	}
	defer conn.Close()
	if s.Attached != nil {
		s.Attached()
	}
	st, err := shim.Stream(ctx, conn, r, s, resize)
	if err != nil {
		return rt.ExitStatus{}, err
	}
	if st == nil {
		return rt.ExitStatus{}, errors.New("exec: the shim closed the stream without an exit status")
	}
	return *st, nil
}

package engine

import (
	"context"
	"sort"
)

// Process is one process of a running container, as top shows it.
type Process struct {
	PID  int `json:"pid"`
	PPID int `json:"ppid"`
	UID  int `json:"uid"`
	// State is the kernel's one-letter state (R, S, D, Z, T).
	State string `json:"state"`
	// CPUTicks is the CPU time used, in clock ticks (user and system).
	CPUTicks uint64 `json:"cpuTicks"`
	// Command is the command line, or the command's name in brackets when it has none.
	Command string `json:"command"`
}

// Top lists the processes of running container ref, by pid.
func (e *Engine) Top(ctx context.Context, ref string) ([]Process, error) {
	_, task, err := e.task(ref)
	if err != nil {
		return nil, err
	}
	pids, err := task.Pids(ctx)
	if err != nil {
		return nil, err
	}
	sort.Ints(pids)
	out := make([]Process, 0, len(pids))
	for _, pid := range pids {
		if p, ok := readProcess(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

//go:build linux

package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// task is a container under a shim.
type task struct {
	*shim.Task
	r      *Runtime
	id     string
	rootfs string
}

func (r *Runtime) newTask(id, rootfs string, pid int, exit *rt.ExitStatus) *task {
	return &task{Task: shim.NewTask(r.dir(id), pid, exit, func() *rt.ExitStatus { return r.lostExit(context.Background(), id) }),
		r: r, id: id, rootfs: rootfs}
}

func (t *task) Start(ctx context.Context) (int, error) {
	pid, err := t.Started(ctx)
	if err != nil {
		return 0, createError(err)
	}
	return pid, nil
}

func (t *task) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, t.id, strconv.Itoa(int(sig)))
	out, err := t.r.runcCmd(ctx, args...)
	if err != nil {
		if strings.Contains(out, "not running") || strings.Contains(out, "does not exist") || strings.Contains(out, "process already finished") {
			return nil // it exited meanwhile: its exit is reported by Wait
		}
		return fmt.Errorf("runc kill: %s", strings.TrimSpace(out))
	}
	return nil
}

func (t *task) Pause(ctx context.Context) error  { return t.runcSimple(ctx, "pause") }
func (t *task) Resume(ctx context.Context) error { return t.runcSimple(ctx, "resume") }

func (t *task) runcSimple(ctx context.Context, verb string) error {
	if out, err := t.r.runcCmd(ctx, verb, t.id); err != nil {
		return fmt.Errorf("runc %s: %s", verb, strings.TrimSpace(out))
	}
	return nil
}

// Stats reads the container's cgroup counters through runc.
func (t *task) Stats(ctx context.Context) (*rt.Stats, error) {
	out, err := t.r.runcCmd(ctx, "events", "--stats", t.id)
	if err != nil {
		return nil, fmt.Errorf("runc events: %s", strings.TrimSpace(out))
	}
	var ev struct {
		Data struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
					Limit uint64 `json:"limit"`
				} `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		return nil, fmt.Errorf("runc events: %w", err)
	}
	limit := ev.Data.Memory.Usage.Limit
	if limit >= 1<<62 {
		limit = 0 // no limit: cgroup v1 reports a huge number
	}
	return &rt.Stats{CPUNanos: ev.Data.CPU.Usage.Total, MemoryBytes: ev.Data.Memory.Usage.Usage,
		MemoryLimit: limit, Pids: ev.Data.Pids.Current, At: nowUTC()}, nil
}

// Pids lists the container's processes through runc ps.
func (t *task) Pids(ctx context.Context) ([]int, error) {
	out, err := t.r.runcCmd(ctx, "ps", "--format", "json", t.id)
	if err != nil {
		return nil, fmt.Errorf("runc ps: %s", strings.TrimSpace(out))
	}
	var pids []int
	if err := json.Unmarshal([]byte(out), &pids); err != nil {
		return nil, fmt.Errorf("runc ps: %w", err)
	}
	return pids, nil
}

// Exec runs a process in the container. Without a terminal, runc exec stays its parent
// and exits with its status. With one, runc must detach (it passes a terminal on only
// then): the process becomes this process's child, a subreaper (see New), and is waited
// for here.
func (t *task) Exec(ctx context.Context, cfg *rt.ExecConfig, s rt.Streams, resize <-chan [2]uint16) (rt.ExitStatus, error) {
	proc, err := ExecProcess(t.rootfs, cfg, nil)
	if err != nil {
		return rt.ExitStatus{}, err
	}
	data, err := json.Marshal(proc)
	if err != nil {
		return rt.ExitStatus{}, err
	}
	f, err := os.CreateTemp(t.r.dir(t.id), "exec-*.json")
	if err != nil {
		return rt.ExitStatus{}, err
	}
	defer os.Remove(f.Name())
	f.Write(data)
	f.Close()
	logPath := f.Name() + ".log"
	defer os.Remove(logPath)
	args := []string{"--root", t.r.runcRoot(), "--log", logPath, "--log-format", "json", "exec", "--process", f.Name()}
	// os/exec and the terminal copy know nothing of flushing: flush every write.
	s.Stdout, s.Stderr = flushing(s.Stdout), flushing(s.Stderr)
	var st rt.ExitStatus
	if cfg.Tty {
		st, err = t.execTerminal(ctx, args, f.Name()+".pid", logPath, s, resize)
	} else {
		st, err = t.execPipes(ctx, args, f.Name()+".pid", s)
	}
	if err != nil {
		return rt.ExitStatus{}, err
	}
	// runc exec fails with 255 when the process could not start at all.
	if st.Code == 255 {
		if msg := shim.RuncLogError(logPath); msg != "" {
			err := createError(errors.New(msg))
			if errors.Is(err, errdefs.ErrInvalidArgument) {
				return rt.ExitStatus{}, err
			}
			return rt.ExitStatus{}, fmt.Errorf("exec: %s", msg)
		}
	}
	return st, nil
}

func (t *task) execPipes(ctx context.Context, args []string, pidFile string, s rt.Streams) (rt.ExitStatus, error) {
	defer os.Remove(pidFile)
	cmd := exec.Command(t.r.runc, append(args, "--pid-file", pidFile, t.id)...)
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if s.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if s.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	var stdin io.WriteCloser
	if s.Stdin != nil {
		// Copied here rather than by os/exec, whose Wait would wait for the input to end
		// even after the process did.
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return rt.ExitStatus{}, err
		}
	}
	if err := cmd.Start(); err != nil {
		return rt.ExitStatus{}, err
	}
	if stdin != nil {
		go func() {
			io.Copy(stdin, s.Stdin)
			stdin.Close()
		}()
	}
	// An end of ctx (a health probe's timeout) kills the process, not only runc, which
	// would leave it running in the container.
	// runc writes the pid once the process runs, which may be after ctx ended: waited
	// for a while (runc lives until its process does).
	// runc stays the process's parent and reaps it: killed first, it would leave the
	// process to this daemon (a subreaper), a zombie in the container's PID namespace,
	// which then cannot end. So runc is killed only if it outlives its process.
	waited := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			if b, err := os.ReadFile(pidFile); err == nil {
				// Still runc's child: not a pid reused since the process ended.
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && parentOf(pid) == cmd.Process.Pid {
					killTree(pid)
					break
				}
			}
			select {
			case <-waited:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		select {
		case <-waited:
		case <-time.After(2 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
		}
	})
	defer stop()
	err := cmd.Wait()
	close(waited)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return rt.ExitStatus{}, err
	}
	return exitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
}

func (t *task) execTerminal(ctx context.Context, args []string, pidFile, logPath string, s rt.Streams, resize <-chan [2]uint16) (rt.ExitStatus, error) {
	path, receive, err := shim.ConsoleSocket()
	if err != nil {
		return rt.ExitStatus{}, err
	}
	defer os.Remove(pidFile)
	args = append(args, "--detach", "--tty", "--console-socket", path, "--pid-file", pidFile, t.id)
	out, err := exec.CommandContext(ctx, t.r.runc, args...).CombinedOutput()
	console, cerr := receive()
	if err != nil {
		if console != nil {
			console.Close()
		}
		if msg := shim.RuncLogError(logPath); msg != "" {
			return rt.ExitStatus{Code: 255}, nil // Exec reports the log's error
		}
		return rt.ExitStatus{}, fmt.Errorf("runc exec: %s", strings.TrimSpace(string(out)))
	}
	if cerr != nil {
		return rt.ExitStatus{}, fmt.Errorf("exec terminal: %w", cerr)
	}
	defer console.Close()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return rt.ExitStatus{}, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return rt.ExitStatus{}, fmt.Errorf("exec pid: %w", err)
	}
	exited := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		exited <- ws
	}()
	stop := context.AfterFunc(ctx, func() { unix.Kill(pid, unix.SIGKILL) })
	defer stop()
	if s.Stdin != nil {
		go io.Copy(console, s.Stdin)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if s.Stdout != nil {
			io.Copy(s.Stdout, console) // ends with EIO once the process's side closes
		}
	}()
	var ws unix.WaitStatus
	for waiting := true; waiting; {
		select {
		case ws = <-exited:
			waiting = false
		case sz := <-resize:
			unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz[0], Col: sz[1]})
		}
	}
	select {
	case <-copied:
	case <-time.After(time.Second):
		// A process the exec started keeps the terminal open: its output is not
		// the exec's any more.
	}
	return exitStatus(syscall.WaitStatus(ws)), nil
}

// exitStatus is how Docker reports a wait status: the exit code, or 128 + the signal.
func exitStatus(ws syscall.WaitStatus) rt.ExitStatus {
	st := rt.ExitStatus{Code: ws.ExitStatus(), At: nowUTC()}
	if ws.Signaled() {
		st.Code, st.Signal = 128+int(ws.Signal()), ws.Signal()
	}
	return st
}

// flushing makes a writer that flushes after every write, for streams copied by os/exec
// (which knows nothing of flushing).
func flushing(w io.Writer) io.Writer {
	if f, ok := w.(rt.Flusher); ok {
		return flushWriter{w, f}
	}
	return w
}

type flushWriter struct {
	w io.Writer
	f rt.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if err == nil {
		err = fw.f.Flush()
	}
	return n, err
}

// parentOf is the parent of process pid, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// killTree kills process pid and its descendants (a shell's children: a health probe's
// sh -c 'curl ...'), found through /proc, descendants first found first killed.
func killTree(pid int) {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := parentOf(p); ppid > 0 {
			children[ppid] = append(children[ppid], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	for _, p := range tree {
		unix.Kill(p, unix.SIGKILL)
	}
}

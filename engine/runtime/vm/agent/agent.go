//go:build linux

// Package agent is the guest side of the vm runtime: it serves the host's requests (see
// package proto) inside the container's VM. dutchman-agent runs it as the guest's init;
// its tests run it on the host, over a socketpair.
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/internal/reaper"
)

// Options configure an Agent.
type Options struct {
	// Reaper reaps the processes the agent starts (and, as init, every orphan).
	Reaper *reaper.Reaper
	// Log receives the agent's own messages.
	Log *slog.Logger
	// Shutdown, if set, is called once the main process's exit was sent and the host
	// asked for the shutdown, or ShutdownGrace after the exit without that.
	Shutdown func()
	// Init is true when the agent is the guest's init: a signal to every process then
	// uses kill(-1), and stats describe the whole guest.
	Init bool
	// Kernel is the kernel release the hello reports.
	Kernel string
}

// ShutdownGrace is how long the agent waits, after the main process's exit, for the
// host to ask for the shutdown (which tells it the exit status arrived).
const ShutdownGrace = 10 * time.Second

// Agent serves one conversation with the host.
type Agent struct {
	conn *proto.Conn
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	root     string
	procs    map[uint32]*process
	shutdown chan struct{}
	once     sync.Once
}

// Serve answers the host on rw until the connection ends or the guest shuts down.
func Serve(rw io.ReadWriteCloser, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Reaper == nil {
		opts.Reaper = reaper.New()
	}
	a := &Agent{conn: proto.NewConn(rw), opts: opts, log: opts.Log, procs: map[uint32]*process{}, shutdown: make(chan struct{})}
	kind, _, p, err := a.conn.Read()
	if err != nil {
		return fmt.Errorf("read the host's hello: %w", err)
	}
	var h proto.Hello
	if kind != proto.KindHello || json.Unmarshal(p, &h) != nil {
		a.conn.WriteJSON(proto.KindHello, 0, proto.Hello{Version: proto.Version, Error: "the first frame is not a hello"})
		return errors.New("the host did not open with a hello")
	}
	if h.Version != proto.Version {
		a.conn.WriteJSON(proto.KindHello, 0, proto.Hello{Version: proto.Version,
			Error: fmt.Sprintf("this agent speaks version %d of the protocol, not %d", proto.Version, h.Version)})
		return fmt.Errorf("the host speaks version %d", h.Version)
	}
	if err := a.conn.WriteJSON(proto.KindHello, 0, proto.Hello{Version: proto.Version, Kernel: opts.Kernel}); err != nil {
		return err
	}
	errs := make(chan error, 1)
	go func() { errs <- a.read() }()
	select {
	case err := <-errs:
		return err
	case <-a.shutdown:
		return nil
	}
}

func (a *Agent) read() error {
	for {
		kind, id, p, err := a.conn.Read()
		if err != nil {
			return err
		}
		switch kind {
		case proto.KindRequest:
			var req proto.Request
			if err := json.Unmarshal(p, &req); err != nil {
				return fmt.Errorf("request %d: %w", id, err)
			}
			go a.answer(id, &req)
		case proto.KindStdin, proto.KindStdinClose:
			pr := a.process(id)
			if pr == nil {
				continue
			}
			if kind == proto.KindStdinClose {
				pr.closeInput()
			} else {
				pr.input(append([]byte(nil), p...))
			}
		default:
			return fmt.Errorf("unexpected frame of kind %d", kind)
		}
	}
}

func (a *Agent) answer(id uint32, req *proto.Request) {
	result, err := a.do(req)
	var resp proto.Response
	if err != nil {
		resp.Error = err.Error()
	} else if result != nil {
		resp.Result, _ = json.Marshal(result)
	}
	if err := a.conn.WriteJSON(proto.KindResponse, id, resp); err != nil {
		a.log.Error("answer", "op", req.Op, "err", err)
	}
	if req.Op == proto.OpShutdown && err == nil {
		a.stop()
	}
}

func (a *Agent) do(req *proto.Request) (any, error) {
	args := func(v any) error {
		if err := json.Unmarshal(req.Args, v); err != nil {
			return fmt.Errorf("%s: %w", req.Op, err)
		}
		return nil
	}
	switch req.Op {
	case proto.OpSetup:
		var s proto.Setup
		if err := args(&s); err != nil {
			return nil, err
		}
		return nil, a.setup(&s)
	case proto.OpStart:
		var p proto.Process
		if err := args(&p); err != nil {
			return nil, err
		}
		pid, err := a.start(&p)
		if err != nil {
			return nil, err
		}
		return proto.Started{Pid: pid}, nil
	case proto.OpSignal:
		var s proto.Signal
		if err := args(&s); err != nil {
			return nil, err
		}
		return nil, a.signal(&s)
	case proto.OpResize:
		var r proto.Resize
		if err := args(&r); err != nil {
			return nil, err
		}
		pr := a.process(r.ID)
		if pr == nil {
			return nil, fmt.Errorf("no process %d", r.ID)
		}
		return nil, pr.resize(r.Rows, r.Cols)
	case proto.OpStats:
		return a.stats()
	case proto.OpShutdown:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown request %q", req.Op)
}

// process is the running process id, or nil.
func (a *Agent) process(id uint32) *process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[id]
}

// stop ends Serve, once, and runs the Shutdown hook.
func (a *Agent) stop() {
	a.once.Do(func() {
		if a.opts.Shutdown != nil {
			a.opts.Shutdown()
		}
		close(a.shutdown)
	})
}

func (a *Agent) setup(s *proto.Setup) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.root != "" {
		return errors.New("the container is set up already")
	}
	if s.Root == "" {
		return errors.New("setup: no root")
	}
	if a.opts.Init && s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set the host name: %w", err)
		}
	}
	if err := mountRoot(s.RootMounts); err != nil {
		return err
	}
	if err := mountAll(s.Root, s.Mounts); err != nil {
		return err
	}
	if a.opts.Init {
		if err := configureNetwork(s.Interfaces); err != nil {
			return err
		}
	}
	a.root = s.Root
	return nil
}

func (a *Agent) signal(s *proto.Signal) error {
	if s.All && a.opts.Init {
		// Every process but init: the container's, and the ones it left.
		if err := unix.Kill(-1, syscall.Signal(s.Signal)); err != nil && err != unix.ESRCH {
			return err
		}
		return nil
	}
	pr := a.process(s.ID)
	if pr == nil || pr.pid <= 0 {
		return fmt.Errorf("no process %d", s.ID)
	}
	if s.All || s.Group {
		// (All when the agent is not init, in tests: the process's group.)
		return unix.Kill(-pr.pid, syscall.Signal(s.Signal))
	}
	return unix.Kill(pr.pid, syscall.Signal(s.Signal))
}

// exited sends a process's exit status. After the main process's, every process left is
// killed and, once the host has the status, the guest shuts down.
func (a *Agent) exited(pr *process, st proto.ExitStatus) {
	if pr.id == proto.MainProcess && a.opts.Init {
		unix.Kill(-1, unix.SIGKILL)
	}
	pr.drain(pr.id == proto.MainProcess)
	a.mu.Lock()
	delete(a.procs, pr.id)
	a.mu.Unlock()
	if err := a.conn.WriteJSON(proto.KindExit, pr.id, st); err != nil {
		a.log.Error("send exit status", "process", pr.id, "err", err)
	}
	if pr.id == proto.MainProcess {
		go func() {
			select {
			case <-a.shutdown:
			case <-time.After(ShutdownGrace):
				a.log.Warn("the host did not ask for the shutdown; shutting down")
				a.stop()
			}
		}()
	}
}

// stats describe the machine the agent runs on (the guest), its init aside.
func (a *Agent) stats() (*proto.Stats, error) {
	var st proto.Stats
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal: all but idle and iowait.
		for i, v := range f[1:9] {
			if i == 3 || i == 4 {
				continue
			}
			var n uint64
			fmt.Sscan(v, &n)
			st.CPUNanos += n * uint64(time.Second/100)
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var total, avail uint64
		for line := range strings.Lines(string(b)) {
			var key string
			var kb uint64
			if n, _ := fmt.Sscan(line, &key, &kb); n == 2 {
				switch key {
				case "MemTotal:":
					total = kb << 10
				case "MemAvailable:":
					avail = kb << 10
				}
			}
		}
		st.MemoryLimit = total
		if total > avail {
			st.MemoryBytes = total - avail
		}
	}
	st.Pids = uint64(countProcesses())
	return &st, nil
}

// countProcesses counts the user processes of the guest but init.
func countProcesses() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.Name() == "1" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		// Kernel threads have no command line.
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}

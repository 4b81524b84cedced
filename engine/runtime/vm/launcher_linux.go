package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/frames"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// LauncherName is the shim launcher of the vm runtime.
const LauncherName = "vm"

// Files in the shim's state directory.
const (
	consoleFile = "console.log" // the guest's serial console: the kernel's messages
	shareDir    = "share"       // the virtio-fs share's mount points
)

// fsSocket is virtiofsd's socket, named relative to the state directory, where
// virtiofsd and QEMU run (a socket's path may not exceed 108 bytes), after the container:
// virtiofsd locks a pid file named after the socket's path, so each must have its own.
func (l *launcher) fsSocket() string { return "fs-" + filepath.Base(l.env.Dir) + ".sock" }

// virtiofsdPidDir is where Debian's virtiofsd keeps its pid files.
const virtiofsdPidDir = "/var/run/virtiofsd"

// bootTimeout bounds the wait for the agent: a TCG guest on a busy machine boots in
// seconds, not minutes.
const bootTimeout = 2 * time.Minute

// launcher boots a container's VM for the shim and talks to its agent.
type launcher struct {
	env shim.LauncherEnv
	cfg LaunchConfig

	qemu, fsd *child

	// client and main are set once the VM runs (under mu); ended is closed once the
	// main process's end is known.
	client *proto.Client
	main   *proto.Proc
	ended  chan struct{}
	// out are the launcher's copies of the container's output streams (or the terminal's
	// far end), closed once its output is all written.
	out []io.Closer

	// macs are the guest NICs' addresses, one per tap.
	macs []string

	mu     sync.Mutex
	nextID uint32
	paused bool
}

// NewLauncher makes the vm launcher of a shim.
func NewLauncher(env shim.LauncherEnv) (shim.Launcher, error) {
	l := &launcher{env: env, nextID: proto.MainProcess + 1, ended: make(chan struct{})}
	if err := json.Unmarshal(env.Config, &l.cfg); err != nil {
		return nil, fmt.Errorf("vm launcher: %w", err)
	}
	return l, nil
}

func (l *launcher) Launch(stdio [3]*os.File) (launched *shim.Launched, err error) {
	var console *os.File
	defer func() {
		if err != nil {
			// The shim waits for the end of its output: its copies go with the VM.
			for _, c := range l.out {
				c.Close()
			}
			if console != nil {
				console.Close()
			}
			l.teardown()
		}
	}()
	if err := l.startVirtiofsd(); err != nil {
		return nil, err
	}
	taps, ifaces, err := openTaps(l.cfg.NetNS)
	if err != nil {
		return nil, err
	}
	l.cfg.Setup.Interfaces, l.macs = ifaces, nil
	for _, i := range ifaces {
		l.macs = append(l.macs, i.MAC)
	}
	defer func() {
		for _, t := range taps {
			t.Close()
		}
	}()
	host, err := l.startQEMU(taps)
	if err != nil {
		return nil, err
	}
	if err := l.connect(host); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.client.Call(ctx, proto.OpSetup, l.cfg.Setup, nil); err != nil {
		return nil, fmt.Errorf("set the container up in its VM: %w", err)
	}

	var stdout, stderr io.Writer
	p := l.cfg.Process
	if l.env.Tty {
		// The host's side of the guest's terminal: the shim reads and writes one end,
		// the launcher carries the other's bytes to the guest and back.
		ours, theirs, err := filePair("console")
		if err != nil {
			return nil, err
		}
		console, stdout = theirs, ours
		l.out = append(l.out, ours)
		p.Stdin = true
		if l.env.ConsoleSize[0] > 0 {
			p.Rows, p.Cols = l.env.ConsoleSize[0], l.env.ConsoleSize[1]
		}
	} else {
		o, err := dupFile(stdio[1])
		if err != nil {
			return nil, err
		}
		e, err := dupFile(stdio[2])
		if err != nil {
			o.Close()
			return nil, err
		}
		stdout, stderr = o, e
		l.out = append(l.out, o, e)
		p.Stdin = l.env.Stdin
	}
	main, err := l.client.Start(ctx, &p, stdout, stderr)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.main = main
	l.mu.Unlock()
	switch {
	case l.env.Tty:
		go copyInput(main, l.out[0].(*os.File))
	case l.env.Stdin:
		in, err := dupFile(stdio[0])
		if err == nil {
			go copyInput(main, in)
		}
	}
	done := make(chan rt.ExitStatus, 1)
	go l.wait(done)
	return &shim.Launched{Pid: l.qemu.Pid, Done: done, Console: console}, nil
}

// filePair makes the two ends of a connected stream socket pair: the launcher's, and
// the other side's (the shim's end of a terminal, QEMU's of a channel).
func filePair(name string) (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name+"-peer"), nil
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// copyInput sends what r reads to the process, then the end of input.
func copyInput(p *proto.Proc, r io.ReadCloser) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := p.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.CloseStdin()
			return
		}
	}
}

// child is a process the launcher started: exited is closed once it ended, and ws then
// says how. The end of its output is kept in stderr as well as written to the shim's
// log; stderrDone is closed once its last words are there.
type child struct {
	*os.Process
	exited     chan struct{}
	ws         unix.WaitStatus
	stderr     *tail
	stderrDone chan struct{}
}

// stop ends the child if it has not ended within grace.
func (c *child) stop(grace time.Duration) {
	if c == nil {
		return
	}
	select {
	case <-c.exited:
		return
	case <-time.After(grace):
	}
	c.Signal(syscall.SIGCONT) // a paused VM
	c.Kill()
	<-c.exited
}

func (c *child) exitWords() string {
	if c.ws.Signaled() {
		return "killed by " + c.ws.Signal().String()
	}
	return "status " + strconv.Itoa(c.ws.ExitStatus())
}

// startProcess starts a child of the shim that dies with it (its parent-death signal is
// bound to a thread that never ends), registered with the shim's reaper. Its stdout and
// stderr go to the shim's log, and their end is kept to say why it stopped.
func (l *launcher) startProcess(cmd *exec.Cmd) (*child, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, outW
	c, err := l.startReaped(cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		return nil, err
	}
	c.stderr, c.stderrDone = newTail(4096), make(chan struct{})
	go func() {
		defer close(c.stderrDone)
		defer outR.Close()
		io.Copy(io.MultiWriter(os.Stderr, c.stderr), outR)
	}()
	return c, nil
}

// outputEnded waits a moment for the end of the child's output, which follows its exit.
func (c *child) outputEnded() {
	select {
	case <-c.stderrDone:
	case <-time.After(time.Second):
	}
}

// lastWords are the end of the child's output, on a line.
func (c *child) lastWords() string {
	c.outputEnded()
	return strings.Join(c.stderr.lines(3), "; ")
}

// startReaped starts cmd on a thread of its own, registered with the shim's reaper.
func (l *launcher) startReaped(cmd *exec.Cmd) (*child, error) {
	type started struct {
		done <-chan unix.WaitStatus
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		// The thread is never unlocked, so never reused nor ended while the child lives.
		runtime.LockOSThread()
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		r := l.env.Reaper
		r.Mu.Lock()
		if err := cmd.Start(); err != nil {
			r.Mu.Unlock()
			ch <- started{err: err}
			return
		}
		done := r.ExpectLocked(cmd.Process.Pid)
		r.Mu.Unlock()
		ch <- started{done: done}
		select {} // keep the thread
	}()
	s := <-ch
	if s.err != nil {
		return nil, s.err
	}
	c := &child{Process: cmd.Process, exited: make(chan struct{})}
	go func() {
		c.ws = <-s.done
		close(c.exited)
	}()
	return c, nil
}

// startVirtiofsd assembles the share and serves it, through `dutchman vm-share` in a
// mount namespace of its own.
func (l *launcher) startVirtiofsd() error {
	dir := filepath.Join(l.env.Dir, shareDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sock := filepath.Join(l.env.Dir, l.fsSocket())
	os.Remove(sock)
	req, err := json.Marshal(shareRequest{Dir: dir, Share: l.cfg.Share, Argv: []string{
		l.cfg.Virtiofsd, "--socket-path=" + l.fsSocket(), "-o", "source=" + dir, "-o", "cache=auto",
		"-o", "announce_submounts", "-o", "xattr", "-o", "log_level=warn",
	}})
	if err != nil {
		return err
	}
	cmd := exec.Command(l.cfg.Self, "vm-share", string(req))
	cmd.Dir = l.env.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if l.fsd, err = l.startProcess(cmd); err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-l.fsd.exited:
			return fmt.Errorf("virtiofsd exited (%s) before it served the share: %s", l.fsd.exitWords(), l.fsd.lastWords())
		case <-deadline:
			return errors.New("virtiofsd did not listen within 10s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// qemuArgs is QEMU's command line: a microvm with the agent's channel, its console, the
// share, entropy, and a NIC on each tap.
func (l *launcher) qemuArgs(ntaps int) []string {
	c := l.cfg
	m := machine{
		// The container's id names the VM: ps shows whose QEMU it is.
		name: "dutchman-" + filepath.Base(l.env.Dir),
		kvm:  c.KVM, cpu: c.CPU, memoryMiB: c.MemoryMiB, cpus: c.CPUs,
		kernel: c.Kernel, initramfs: c.Initramfs, cmdline: c.Cmdline,
	}
	args := append(m.args(),
		"-chardev", "socket,id=fs,path="+l.fsSocket(),
		"-device", "vhost-user-fs-device,chardev=fs,tag=share",
		"-device", "virtio-rng-device",
	)
	for i, d := range c.Disks {
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw", qemuValue(d.Path), i)
		if d.ReadOnly {
			// Shared by every container of the image: read-only, and locked as such.
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=disk%d,serial=%s", i, d.Serial))
	}
	if c.Vsock != nil {
		args = append(args, "-device", fmt.Sprintf("vhost-vsock-device,guest-cid=%d", c.Vsock.CID))
	} else {
		args = append(args, serialArgs(agent.PortName)...)
	}
	for i := range ntaps {
		args = append(args, "-netdev", fmt.Sprintf("tap,id=net%d,fd=%d", i, firstTapFd+i),
			"-device", fmt.Sprintf("virtio-net-device,netdev=net%d,mac=%s", i, l.macs[i]))
	}
	return args
}

// qemuValue escapes a value of a QEMU option list, where a comma is written twice.
func qemuValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// startQEMU boots the VM and returns the host's end of the agent's channel (nil with
// vsock, which is dialled once the guest listens).
func (l *launcher) startQEMU(taps []*os.File) (io.ReadWriteCloser, error) {
	hostF, guestF, err := filePair("agent")
	if err != nil {
		return nil, err
	}
	defer hostF.Close()
	defer guestF.Close()
	consoleOurs, consoleTheirs, err := filePair("console")
	if err != nil {
		return nil, err
	}
	defer consoleTheirs.Close()
	go l.keepConsole(consoleOurs)
	cmd := exec.Command(l.cfg.QEMU, l.qemuArgs(len(taps))...)
	cmd.Dir = l.env.Dir
	// At agentFd, consoleFd and firstTapFd on.
	cmd.ExtraFiles = append([]*os.File{guestF, consoleTheirs}, taps...)
	if l.qemu, err = l.startProcess(cmd); err != nil {
		return nil, fmt.Errorf("start QEMU: %w", err)
	}
	if l.cfg.Vsock != nil {
		return nil, nil
	}
	return net.FileConn(hostF)
}

// dialVsock connects to the agent from a port below 1024 of the host, which only root
// may bind: the agent takes no connection from anywhere else (any user of the host may
// reach a guest's vsock port).
func dialVsock(cid, port uint32) (io.ReadWriteCloser, error) {
	for local := uint32(1023); local >= 600; local-- {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: local}); err != nil {
			unix.Close(fd)
			if err == unix.EADDRINUSE {
				continue
			}
			return nil, fmt.Errorf("bind vsock port %d: %w", local, err)
		}
		if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, err
		}
		// Non-blocking, the file is the runtime poller's: it takes write deadlines.
		return os.NewFile(uintptr(fd), "vsock"), nil
	}
	return nil, errors.New("no free vsock port below 1024 on the host")
}

// connect opens the conversation with the agent, giving up if QEMU exits first.
func (l *launcher) connect(conn io.ReadWriteCloser) error {
	deadline := time.Now().Add(bootTimeout)
	if conn == nil {
		// vsock: the agent listens once the guest is up.
		for {
			c, err := dialVsock(l.cfg.Vsock.CID, l.cfg.Vsock.Port)
			if err == nil {
				conn = c
				break
			}
			if time.Now().After(deadline) {
				return errdefs.CannotRun(fmt.Errorf("the guest agent did not listen on vsock within %s: %w%s", bootTimeout, err, l.consoleTail()))
			}
			select {
			case <-l.qemu.exited:
				return l.vmStopped()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	type result struct {
		c   *proto.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := proto.Handshake(conn)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			// A QEMU that ends closes the channel: its end says more than the channel's
			// reset, and comes at once.
			select {
			case <-l.qemu.exited:
				return l.vmStopped()
			case <-time.After(time.Second):
			}
			return errdefs.CannotRun(fmt.Errorf("guest agent: %w%s", r.err, l.consoleTail()))
		}
		l.mu.Lock()
		l.client = r.c
		l.mu.Unlock()
		return nil
	case <-l.qemu.exited:
		conn.Close()
		return l.vmStopped()
	case <-time.After(time.Until(deadline)):
		conn.Close()
		return errdefs.CannotRun(fmt.Errorf("the guest agent did not answer within %s%s", bootTimeout, l.consoleTail()))
	}
}

// vmStopped is the error of a VM that ended before its agent answered: how QEMU ended,
// in its own words, and the guest console's last lines (a kernel's panic).
func (l *launcher) vmStopped() error {
	l.qemu.outputEnded()
	return errdefs.CannotRun(fmt.Errorf("the VM stopped: %s%s", qemuEnd(l.qemu.ws, l.qemu.stderr), l.consoleTail()))
}

// maxConsole bounds console.log: past it, the file starts again (the guest writes to
// its serial port what it likes).
const maxConsole = 1 << 20

// keepConsole copies the guest's serial console into console.log until QEMU closes it.
func (l *launcher) keepConsole(r *os.File) {
	defer r.Close()
	path := filepath.Join(l.env.Dir, consoleFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		io.Copy(io.Discard, r)
		return
	}
	defer f.Close()
	var size int64
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if size+int64(n) > maxConsole {
				f.Truncate(0)
				f.Seek(0, io.SeekStart)
				size = 0
			}
			f.Write(buf[:n])
			size += int64(n)
		}
		if err != nil {
			return
		}
	}
}

// consoleTail is the end of the guest's console, to explain a failed boot.
func (l *launcher) consoleTail() string {
	f, err := os.Open(filepath.Join(l.env.Dir, consoleFile))
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4096 {
		f.Seek(-4096, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; the guest's console ends with: " + strings.Join(lines, " | ")
}

// wait waits for the main process's end, powers the VM off, and reports the end.
func (l *launcher) wait(done chan<- rt.ExitStatus) {
	var st rt.ExitStatus
	select {
	case pst, ok := <-l.main.Exit():
		if ok {
			st = exitStatus(pst)
		} else {
			st = rt.ExitStatus{Code: 255, Error: "lost the connection to the guest agent" + l.consoleTail()}
		}
	case <-l.qemu.exited:
		l.qemu.outputEnded()
		st = rt.ExitStatus{Code: 255, Error: "the VM stopped before the container's process ended: " + qemuEnd(l.qemu.ws, l.qemu.stderr) + l.consoleTail()}
		if ws := l.qemu.ws; ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			st = rt.ExitStatus{Code: 137, Signal: syscall.SIGKILL}
		}
	}
	close(l.ended)
	// Its output is all written: the shim's copies see their end.
	for _, c := range l.out {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	l.client.Call(ctx, proto.OpShutdown, nil, nil)
	cancel()
	l.teardown()
	st.At = time.Now().UTC()
	done <- st
}

// teardown ends QEMU (which the guest's power-off already did, normally) and virtiofsd,
// and removes the socket.
func (l *launcher) teardown() {
	if l.client != nil {
		l.client.Close()
	}
	l.qemu.stop(15 * time.Second)
	// virtiofsd ends when QEMU closes its socket.
	l.fsd.stop(2 * time.Second)
	os.Remove(filepath.Join(l.env.Dir, l.fsSocket()))
	// The pid file virtiofsd locked, which it leaves (QEMU's virtiofsd keeps it in
	// LOCALSTATEDIR/run/virtiofsd, named after its socket's path).
	os.Remove(filepath.Join(virtiofsdPidDir, l.fsSocket()+".pid"))
	// The share's mount points (the mounts were virtiofsd's, gone with it).
	os.RemoveAll(filepath.Join(l.env.Dir, shareDir))
}

func exitStatus(p proto.ExitStatus) rt.ExitStatus {
	return rt.ExitStatus{Code: p.Code, Signal: syscall.Signal(p.Signal), OOMKilled: p.OOMKilled, Error: p.Error}
}

// Resize sets the size of the container's terminal.
func (l *launcher) Resize(rows, cols uint16) error {
	_, main, err := l.running()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return main.Resize(ctx, rows, cols)
}

// Requests of the vm launcher on the shim's socket.
const (
	opKill   = "vm-kill"   // killArgs
	opExec   = "vm-exec"   // proto.Process (its ID is set by the shim) → execStarted, then frames
	opStats  = "vm-stats"  // → rt.Stats
	opPause  = "vm-pause"  // freezes the VM
	opResume = "vm-resume" // thaws it
	opPids   = "vm-pids"   // → the host processes of the container: QEMU, virtiofsd
)

type killArgs struct {
	Signal int  `json:"signal"`
	All    bool `json:"all,omitempty"`
}

type execStarted struct {
	Pid int `json:"pid"`
}

// Handle answers the runtime's requests that only the launcher can.
func (l *launcher) Handle(op string, args json.RawMessage, c *net.UnixConn, r *bufio.Reader) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch op {
	case opKill:
		var a killArgs
		if err := json.Unmarshal(args, &a); err != nil {
			shim.Reply(c, nil, err)
			return true
		}
		shim.Reply(c, nil, l.kill(ctx, a))
	case opStats:
		var st proto.Stats
		err := l.call(ctx, proto.OpStats, nil, &st)
		shim.Reply(c, rt.Stats{CPUNanos: st.CPUNanos, MemoryBytes: st.MemoryBytes, MemoryLimit: st.MemoryLimit, Pids: st.Pids, At: time.Now().UTC()}, err)
	case opPause, opResume:
		shim.Reply(c, nil, l.freeze(op == opPause))
	case opPids:
		pids := []int{}
		for _, c := range []*child{l.qemu, l.fsd} {
			if c != nil {
				pids = append(pids, c.Pid)
			}
		}
		shim.Reply(c, pids, nil)
	case opExec:
		var p proto.Process
		if err := json.Unmarshal(args, &p); err != nil {
			shim.Reply(c, nil, err)
			return true
		}
		l.exec(c, r, &p)
	default:
		return false
	}
	return true
}

// running returns the conversation and the main process, or an error before the VM runs.
func (l *launcher) running() (*proto.Client, *proto.Proc, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil || l.main == nil {
		return nil, nil, errors.New("the container is not running")
	}
	return l.client, l.main, nil
}

func (l *launcher) call(ctx context.Context, op string, args, result any) error {
	c, _, err := l.running()
	if err != nil {
		return err
	}
	return c.Call(ctx, op, args, result)
}

// killGrace is how long a SIGKILL the agent accepted may take to end the container
// before the VM itself is killed: a guest that says yes and does nothing is not obeyed.
const killGrace = 10 * time.Second

// kill signals the container's process (or all its processes) through the agent. A
// SIGKILL ends the VM when the agent cannot deliver it, or when the container is still
// there killGrace later.
func (l *launcher) kill(ctx context.Context, a killArgs) error {
	_, main, err := l.running()
	if err != nil {
		return err
	}
	l.mu.Lock()
	paused := l.paused
	l.mu.Unlock()
	if a.Signal == int(syscall.SIGKILL) {
		if paused {
			l.qemu.Signal(syscall.SIGKILL)
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := main.Signal(ctx, a.Signal, a.All); err != nil {
			l.qemu.Signal(syscall.SIGKILL)
			return nil
		}
		go func() {
			select {
			case <-l.ended:
			case <-time.After(killGrace):
				l.env.Log.Warn("the container outlived its SIGKILL; killing its VM")
				l.qemu.Signal(syscall.SIGKILL)
			}
		}()
		return nil
	}
	err = main.Signal(ctx, a.Signal, a.All)
	if err != nil && strings.Contains(err.Error(), "no process") {
		return nil // it exited meanwhile: Wait reports it
	}
	return err
}

// freeze stops or continues the VM's processes on the host.
func (l *launcher) freeze(stop bool) error {
	if l.qemu == nil {
		return errors.New("the container is not running")
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := l.qemu.Signal(sig); err != nil {
		return err
	}
	l.mu.Lock()
	l.paused = stop
	l.mu.Unlock()
	return nil
}

// execOutput writes a process's output as frames on an exec's connection. Until the
// answer to the exec is sent, output is held: the conversation's reader writes it, and
// must not wait for the answer it has yet to deliver.
type execOutput struct {
	mu      sync.Mutex
	w       *bufio.Writer
	started bool
	held    []heldFrame
	err     error
}

type heldFrame struct {
	kind byte
	data []byte
}

func (o *execOutput) write(kind byte, p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.started {
		o.held = append(o.held, heldFrame{kind, append([]byte(nil), p...)})
		return len(p), nil
	}
	o.sendLocked(kind, p)
	// A client that went loses the output; the process is not held up by it.
	return len(p), nil
}

// sendLocked writes one frame unless the connection failed already.
func (o *execOutput) sendLocked(kind byte, p []byte) {
	if o.err == nil {
		if o.err = frames.Write(o.w, kind, p); o.err == nil {
			o.err = o.w.Flush()
		}
	}
}

// start sends what was held, after the answer.
func (o *execOutput) start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = true
	for _, f := range o.held {
		o.sendLocked(f.kind, f.data)
	}
	o.held = nil
}

type streamWriter struct {
	o    *execOutput
	kind byte
}

func (s streamWriter) Write(p []byte) (int, error) { return s.o.write(s.kind, p) }

// exec runs a process in the container for the runtime's Exec: the answer carries its
// pid, then frames carry its streams both ways (engine/runtime/frames) until its exit.
func (l *launcher) exec(c *net.UnixConn, r *bufio.Reader, p *proto.Process) {
	client, _, err := l.running()
	if err != nil {
		shim.Reply(c, nil, err)
		return
	}
	l.mu.Lock()
	p.ID = l.nextID
	l.nextID++
	l.mu.Unlock()
	out := &execOutput{w: bufio.NewWriter(c)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	proc, err := client.Start(ctx, p, streamWriter{out, frames.Stdout}, streamWriter{out, frames.Stderr})
	cancel()
	if err != nil {
		shim.Reply(c, nil, err)
		return
	}
	// The answer goes on the connection itself, ahead of the held output.
	shim.Reply(c, execStarted{Pid: proc.Pid}, nil)
	out.start()
	go func() {
		var buf []byte
		for {
			kind, data, err := frames.Read(r, buf)
			if err != nil {
				// The runtime went (a health probe's timeout): the process and its
				// children go too.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				proc.SignalGroup(ctx, int(syscall.SIGKILL))
				cancel()
				return
			}
			buf = data
			switch kind {
			case frames.Stdin:
				proc.Write(data)
			case frames.StdinClose:
				proc.CloseStdin()
			case frames.Resize:
				var size [2]uint16
				if json.Unmarshal(data, &size) == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					proc.Resize(ctx, size[0], size[1])
					cancel()
				}
			}
		}
	}()
	pst, ok := <-proc.Exit()
	st := exitStatus(pst)
	if !ok {
		st = rt.ExitStatus{Code: 255, Error: "lost the connection to the guest agent"}
	}
	st.At = time.Now().UTC()
	payload, _ := json.Marshal(st)
	out.mu.Lock()
	out.sendLocked(frames.Exit, payload)
	out.mu.Unlock()
}

//go:build linux

package agent

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

// process is a process the agent started.
type process struct {
	a   *Agent
	id  uint32
	pid int

	// pty is the terminal's master side, for a process with one.
	pty *os.File
	// stdin is the write end of the process's input pipe (without a terminal).
	stdin *os.File
	// readers are the shim's ends of the output: the pty, or the two pipes.
	readers []*os.File
	output  sync.WaitGroup

	// Input waits in inBuf for the writer, so that a process that does not read never
	// holds up the conversation (the host's requests, other processes).
	inMu     sync.Mutex
	inBuf    [][]byte
	inClosed bool
	inReady  chan struct{}
}

// outputChunk bounds the output sent in one frame.
const outputChunk = 32 << 10

// start starts p in the container's root and returns its pid.
func (a *Agent) start(p *proto.Process) (int, error) {
	a.mu.Lock()
	root, exists := a.root, a.procs[p.ID] != nil
	a.mu.Unlock()
	if root == "" {
		return 0, fmt.Errorf("the container is not set up")
	}
	if exists {
		return 0, fmt.Errorf("process %d exists already", p.ID)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return 0, fmt.Errorf("no command")
	}
	argv0, err := lookPath(root, p.Args[0], p.Env)
	if err != nil {
		return 0, err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// As runc does, a missing working directory is made.
	if full, err := securejoin.SecureJoin(root, cwd); err == nil {
		if _, err := os.Stat(full); os.IsNotExist(err) {
			os.MkdirAll(full, 0o755)
		}
	}

	pr := &process{a: a, id: p.ID, inReady: make(chan struct{}, 1)}
	var theirs []*os.File
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	var files [3]*os.File
	if p.Terminal {
		master, slave, err := openPty(root)
		if err != nil {
			return 0, fmt.Errorf("open a terminal: %w", err)
		}
		theirs = append(theirs, slave)
		pr.pty = master
		pr.readers = []*os.File{master}
		if p.Rows > 0 {
			pr.resize(p.Rows, p.Cols)
		}
		files = [3]*os.File{slave, slave, slave}
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return 0, err
		}
		theirs = append(theirs, null)
		files[0] = null
		if p.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			theirs = append(theirs, r)
			files[0], pr.stdin = r, w
		}
		for i := 1; i <= 2; i++ {
			r, w, err := os.Pipe()
			if err != nil {
				pr.closeFiles()
				return 0, err
			}
			theirs = append(theirs, w)
			files[i] = w
			pr.readers = append(pr.readers, r)
		}
	}
	sys := &syscall.SysProcAttr{
		Setsid:     true,
		Setctty:    p.Terminal,
		Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: p.Groups},
	}
	if root != "/" {
		sys.Chroot = root
	}
	attr := &os.ProcAttr{Dir: cwd, Env: p.Env, Files: files[:], Sys: sys}
	var ooms uint64
	if a.opts.Init {
		ooms = oomKills()
	}
	r := a.opts.Reaper
	r.Mu.Lock()
	proc, err := os.StartProcess(argv0, p.Args, attr)
	if err != nil {
		r.Mu.Unlock()
		pr.closeFiles()
		return 0, startError(p.Args[0], err)
	}
	pr.pid = proc.Pid
	done := r.ExpectLocked(pr.pid)
	r.Mu.Unlock()
	proc.Release() // the reaper waits for it, not os

	a.mu.Lock()
	a.procs[p.ID] = pr
	a.mu.Unlock()
	pr.copyOutput()
	go pr.writeInput()
	go func() {
		ws := <-done
		st := proto.ExitStatus{Code: ws.ExitStatus()}
		if ws.Signaled() {
			st.Signal = int(ws.Signal())
			st.Code = 128 + st.Signal
		}
		// As a cgroup's OOM events mark an oci container: the container's end is
		// OOMKilled when the guest's OOM killer killed any of its processes; an exec's
		// when it was killed while it did.
		if a.opts.Init && oomKills() > ooms {
			st.OOMKilled = p.ID == proto.MainProcess || ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		a.exited(pr, st)
	}()
	return pr.pid, nil
}

// oomKills is how many processes the kernel's OOM killer has killed (/proc/vmstat).
func oomKills() uint64 {
	b, _ := os.ReadFile("/proc/vmstat")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// startError words a failed start as runc does, so that the engine gives it the same
// exit code (127 for a missing command, 126 for one that cannot run).
func startError(cmd string, err error) error {
	if pe, ok := err.(*os.PathError); ok {
		err = pe.Err
	}
	return fmt.Errorf("exec: %q: %w", cmd, err)
}

// lookPath finds file in the PATH of env, inside root, and returns its path there.
func lookPath(root, file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		full, err := securejoin.SecureJoin(root, file)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(full); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, fs.ErrNotExist)
		}
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		full, err := securejoin.SecureJoin(root, p)
		if err != nil {
			continue
		}
		if st, err := os.Stat(full); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			if !path.IsAbs(p) {
				p = "./" + p
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// openPty opens a terminal: from the container's own devpts where it has one, so that
// the process sees its terminal in its /dev/pts.
func openPty(root string) (master, slave *os.File, err error) {
	ptmx := "/dev/ptmx"
	if root != "/" {
		if p, err := securejoin.SecureJoin(root, "/dev/pts/ptmx"); err == nil {
			if _, err := os.Stat(p); err == nil {
				ptmx = p
			}
		}
	}
	master, err = os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		master.Close()
		return nil, nil, errno
	}
	slave = os.NewFile(fd, "pty")
	return master, slave, nil
}

func (pr *process) resize(rows, cols uint16) error {
	if pr.pty == nil {
		return fmt.Errorf("process %d has no terminal", pr.id)
	}
	return unix.IoctlSetWinsize(int(pr.pty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

func (pr *process) copyOutput() {
	for i, f := range pr.readers {
		kind := proto.KindStdout
		if i == 1 {
			kind = proto.KindStderr
		}
		pr.output.Add(1)
		go func() {
			defer pr.output.Done()
			buf := make([]byte, outputChunk)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if pr.a.conn.Write(kind, pr.id, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					return // EOF, or EIO once a terminal's last user closed it
				}
			}
		}()
	}
}

// drain waits for the output to end: at once for the main process (whatever else ran is
// killed), a little for an exec'd process whose children may hold its output.
func (pr *process) drain(main bool) {
	wait := 2 * time.Second
	if main {
		wait = 5 * time.Second
	}
	done := make(chan struct{})
	go func() { pr.output.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
	pr.closeInput()
	pr.closeFiles()
	<-done
}

func (pr *process) closeFiles() {
	for _, f := range pr.readers {
		f.Close()
	}
}

// input queues input for the process.
func (pr *process) input(b []byte) {
	pr.inMu.Lock()
	if !pr.inClosed {
		pr.inBuf = append(pr.inBuf, b)
	}
	pr.inMu.Unlock()
	pr.notifyInput()
}

func (pr *process) closeInput() {
	pr.inMu.Lock()
	pr.inClosed = true
	pr.inMu.Unlock()
	pr.notifyInput()
}

func (pr *process) notifyInput() {
	select {
	case pr.inReady <- struct{}{}:
	default:
	}
}

// writeInput writes queued input to the process; at the end of input it closes the pipe,
// or types the EOF character (Ctrl-D) on a terminal.
func (pr *process) writeInput() {
	var w *os.File = pr.stdin
	if pr.pty != nil {
		w = pr.pty
	}
	for {
		pr.inMu.Lock()
		bufs, closed := pr.inBuf, pr.inClosed
		pr.inBuf = nil
		pr.inMu.Unlock()
		for _, b := range bufs {
			if w != nil {
				w.Write(b)
			}
		}
		if closed {
			break // no input is queued after the end of input
		}
		if len(bufs) == 0 {
			<-pr.inReady
		}
	}
	if pr.pty != nil {
		pr.pty.Write([]byte{4})
	} else if pr.stdin != nil {
		pr.stdin.Close()
	}
}

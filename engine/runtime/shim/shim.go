//go:build linux

package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/reaper"
)

// shim is the running monitor of one container.
type shim struct {
	dir    string
	cfg    Config
	log    *slog.Logger
	reaper *reaper.Reaper

	// The shim's ends of the container's streams. With a terminal, console carries
	// both directions and stdout/stderr are nil.
	stdout, stderr *os.File
	stdin          *os.File
	console        *os.File

	logMu  sync.Mutex
	logs   *logs.Writer
	output sync.WaitGroup

	// The container's ends of its streams, handed to runc at start.
	theirs []*os.File
	stdio  [3]*os.File
	// consoleDone receives the terminal runc sends, for a container with one;
	// consoleReady is closed once console is set.
	consolePath  string
	consoleDone  func() (*os.File, error)
	consoleReady chan struct{}

	mu      sync.Mutex
	pid     int
	started bool
	exit    *rt.ExitStatus
	exited  chan struct{}
	clients map[*client]struct{}
	stdinMu sync.Mutex
	// running yields, once the container started, what its end is awaited on: runc
	// (which stays with a container without a terminal) or the container's own process.
	running chan (<-chan unix.WaitStatus)
	// orphan is set when the awaited process is runc, which the container outlives if
	// runc is killed.
	orphan bool
	// stop ends a shim whose container never started.
	stop chan struct{}
	// oom watches the container's cgroup for the kernel's OOM killer.
	oom *oomWatch

	// launcher, if set, runs the container instead of runc (the vm runtime's VM);
	// launched then yields, once it started, what its end is awaited on.
	launcher Launcher
	launched chan (<-chan rt.ExitStatus)
}

// Main runs the shim whose state directory is dir, and returns its exit code. The daemon
// reads one line on the shim's standard output: "ready" once the shim can start the
// container, or "error MESSAGE". The shim's standard error is its log.
//
// With dir "--spare", the shim first waits for its state directory on standard input:
// the daemon starts one ahead of need.
//
// launchers are the launchers a Config may name, besides runc.
func Main(dir string, launchers map[string]NewLauncher) int {
	closeInherited()
	if dir == "--spare" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil {
			return 0 // the daemon went without needing this shim
		}
		dir = strings.TrimSpace(line)
		logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			unix.Dup2(int(logf.Fd()), 2)
			logf.Close()
		}
		os.Chdir(dir)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := newShim(dir, log, launchers)
	if err != nil {
		fmt.Fprintf(os.Stdout, "error %s\n", oneLine(err.Error()))
		log.Error("shim failed", "err", err)
		return 1
	}
	fmt.Fprintf(os.Stdout, "ready 0\n")
	// The daemon has its answer; nothing else goes to that pipe.
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		unix.Dup2(int(null.Fd()), 1)
		null.Close()
	}
	s.run()
	return 0
}

// closeInherited closes the descriptors the shim inherited beyond its standard streams
// (the daemon's own, such as the tree's FUSE device, leaked by a library): held by a
// shim that outlives the daemon, they would keep the daemon's connections open. This
// process's own descriptors are all close-on-exec.
func closeInherited() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// newShim sets the shim up: the container's streams, its logs, the socket. runc runs only
// when the daemon asks for the start, so that it can attach first.
func newShim(dir string, log *slog.Logger, launchers map[string]NewLauncher) (*shim, error) {
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	s := &shim{dir: dir, log: log, exited: make(chan struct{}), clients: map[*client]struct{}{},
		running: make(chan (<-chan unix.WaitStatus), 1), launched: make(chan (<-chan rt.ExitStatus), 1), stop: make(chan struct{}), consoleReady: make(chan struct{})}
	os.WriteFile(filepath.Join(dir, ShimPidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	if err := json.Unmarshal(data, &s.cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	// Orphans in the container (its init's children, once init exits) become ours to
	// reap, not init's.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a subreaper: %w", err)
	}
	// The shim outlives terminals and daemons; it ends when the container does.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	s.reaper = reaper.New()
	if s.cfg.Launcher != "" {
		newLauncher := launchers[s.cfg.Launcher]
		if newLauncher == nil {
			return nil, fmt.Errorf("this shim has no launcher %q", s.cfg.Launcher)
		}
		s.launcher, err = newLauncher(LauncherEnv{Dir: dir, Log: log, Reaper: s.reaper, Config: s.cfg.LauncherConfig,
			Tty: s.cfg.Tty, Stdin: s.cfg.Stdin, ConsoleSize: s.cfg.ConsoleSize})
		if err != nil {
			return nil, err
		}
	}
	if s.logs, err = logs.OpenWriter(s.cfg.LogDir, s.cfg.Logs); err != nil {
		return nil, fmt.Errorf("open logs: %w", err)
	}
	if err := s.prepareStreams(); err != nil {
		return nil, err
	}
	l, err := listen(s.cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	go s.serve(l)
	return s, nil
}

// prepareStreams makes the container's standard streams: pipes, or a terminal that runc
// creates and sends to a socket.
func (s *shim) prepareStreams() error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.theirs = append(s.theirs, null)
	if s.cfg.Tty && s.launcher != nil {
		// The launcher makes the terminal.
		s.stdio = [3]*os.File{null, null, null}
		return nil
	}
	if s.cfg.Tty {
		path, done, err := ConsoleSocket()
		if err != nil {
			return err
		}
		s.consolePath, s.consoleDone = path, done
		s.stdio = [3]*os.File{null, null, null}
		return nil
	}
	outR, outW, err := pipe()
	if err != nil {
		return err
	}
	errR, errW, err := pipe()
	if err != nil {
		return err
	}
	s.stdout, s.stderr = outR, errR
	s.theirs = append(s.theirs, outW, errW)
	s.stdio = [3]*os.File{null, outW, errW}
	if s.cfg.Stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			return err
		}
		s.stdin = inW
		s.theirs = append(s.theirs, inR)
		s.stdio[0] = inR
	}
	s.copyOutput()
	return nil
}

// launch runs the container with one runc run. For a container without a terminal runc
// stays as its parent and removes its state when it ends; with a terminal runc must
// detach (it cannot pass a terminal on otherwise), and the container becomes the shim's
// child.
func (s *shim) launch() (int, error) {
	if s.launcher != nil {
		return s.launchOther()
	}
	pidFile := filepath.Join(s.dir, PidFile)
	args := []string{"run", "--bundle", s.cfg.Bundle, "--pid-file", pidFile}
	if s.cfg.Tty {
		args = append(args, "--detach", "--console-socket", s.consolePath)
	}
	args = append(args, s.cfg.ID)
	logPath := filepath.Join(s.dir, "runc.log")
	cmd := exec.Command(s.cfg.Runc, append([]string{"--root", s.cfg.RuncRoot, "--log", logPath, "--log-format", "json"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.stdio[0], s.stdio[1], s.stdio[2]
	s.reaper.Mu.Lock() // no reaping between the start and the registration
	if err := cmd.Start(); err != nil {
		s.reaper.Mu.Unlock()
		return 0, fmt.Errorf("run %s: %w", s.cfg.Runc, err)
	}
	runcDone := s.reaper.ExpectLocked(cmd.Process.Pid)
	s.reaper.Mu.Unlock()
	// runc and the container hold their ends of the streams now.
	for _, f := range s.theirs {
		f.Close()
	}
	s.theirs = nil

	if s.cfg.Tty {
		ws := <-runcDone
		console, cerr := s.consoleDone()
		if ws.ExitStatus() != 0 {
			return 0, errdefs.CannotRun(fmt.Errorf("runc run: %s", runcError(logPath)))
		}
		if cerr != nil {
			return 0, fmt.Errorf("receive the container's terminal: %w", cerr)
		}
		s.console = console
		close(s.consoleReady)
		if s.cfg.ConsoleSize[0] > 0 {
			s.resize(s.cfg.ConsoleSize[0], s.cfg.ConsoleSize[1])
		}
		s.copyOutput()
		pid, err := readPid(pidFile)
		if err != nil {
			return 0, err
		}
		s.running <- s.reaper.Expect(pid)
		return pid, nil
	}
	// runc writes the pid file once the container's process runs, and stays until it
	// ends: wait for whichever comes first. (Polling for the file slowed runc down on a
	// machine with few cores: inotify says when to look.)
	changed, stop := watchDir(s.dir)
	defer stop()
	for {
		if pid, err := readPid(pidFile); err == nil {
			s.orphan = true
			s.running <- runcDone
			return pid, nil
		}
		select {
		case ws := <-runcDone:
			if pid, err := readPid(pidFile); err == nil {
				// It ran and ended already: hand the status on.
				done := make(chan unix.WaitStatus, 1)
				done <- ws
				s.running <- done
				return pid, nil
			}
			return 0, errdefs.CannotRun(fmt.Errorf("runc run: %s", runcError(logPath)))
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// launchOther runs the container with the launcher.
func (s *shim) launchOther() (int, error) {
	l, err := s.launcher.Launch(s.stdio)
	// The launcher holds what it needs of the streams now.
	for _, f := range s.theirs {
		f.Close()
	}
	s.theirs = nil
	if err != nil {
		return 0, err
	}
	if l.Console != nil {
		s.console = l.Console
		close(s.consoleReady)
		s.copyOutput()
	}
	s.launched <- l.Done
	return l.Pid, nil
}

// watchDir reports changes to files in dir (inotify), until stop is called.
func watchDir(dir string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return ch, func() {}
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return ch, func() {}
	}
	f := os.NewFile(uintptr(fd), "inotify")
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, errors.New("empty pid file")
	}
	return strconv.Atoi(s)
}

// pipe makes a pipe for a container's output, as large as the kernel allows a user, so
// that a container printing fast rarely waits for the shim.
func pipe() (*os.File, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	return r, w, nil
}

// runcError is the last error runc logged, or a word saying there is none.
func runcError(logPath string) string {
	if msg := RuncLogError(logPath); msg != "" {
		return msg
	}
	return "failed"
}

// RuncLogError is the last error or fatal message of a runc log (--log-format json),
// "" if it has none or cannot be read.
func RuncLogError(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	msg := ""
	for _, line := range strings.Split(string(b), "\n") {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			msg = entry.Msg
		}
	}
	return msg
}

// ConsoleSocket listens where runc sends the container terminal's master side, in a
// short path (a socket path may not exceed 108 bytes).
func ConsoleSocket() (string, func() (*os.File, error), error) {
	dir, err := os.MkdirTemp("", "dutchman-console-")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l.SetDeadline(time.Now().Add(time.Minute))
		c, err := l.AcceptUnix()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		f, err := receiveFd(c)
		ch <- result{f, err}
	}()
	return path, func() (*os.File, error) {
		defer os.RemoveAll(dir)
		defer l.Close()
		select {
		case r := <-ch:
			return r.f, r.err
		case <-time.After(time.Second):
			return nil, errors.New("runc sent no terminal")
		}
	}, nil
}

func receiveFd(c *net.UnixConn) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no descriptor in the console message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("no descriptor in the console message")
	}
	return os.NewFile(uintptr(fds[0]), "console"), nil
}

// copyOutput copies the container's output to its logs and attached clients.
func (s *shim) copyOutput() {
	copyStream := func(f *os.File, stream logs.Stream, kind byte) {
		s.output.Add(1)
		go func() {
			defer s.output.Done()
			buf := make([]byte, 128<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					s.emit(stream, kind, buf[:n])
				}
				if err != nil {
					return // EOF, or EIO from a terminal whose other side closed
				}
			}
		}()
	}
	if s.console != nil {
		copyStream(s.console, logs.Stdout, frameStdout)
		return
	}
	copyStream(s.stdout, logs.Stdout, frameStdout)
	copyStream(s.stderr, logs.Stderr, frameStderr)
}

// emit records a chunk of output and hands it to attached clients.
func (s *shim) emit(stream logs.Stream, kind byte, p []byte) {
	s.logMu.Lock()
	if err := s.logs.Write(stream, p, time.Now()); err != nil {
		s.log.Error("write logs", "err", err)
	}
	s.logMu.Unlock()
	s.mu.Lock()
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	if len(clients) == 0 {
		return
	}
	// An attached reader gets every byte, and a slow one slows the container down, as a
	// slow terminal would: its output is in the logs already. A reader that has gone is
	// dropped (done) and no longer holds anything up.
	chunk := append([]byte(nil), p...)
	for _, c := range clients {
		select {
		case c.out <- frame{kind, chunk}:
		case <-c.done:
		}
	}
}

// run waits for the container to exit, records how, and tells whoever waits.
func (s *shim) run() {
	var st rt.ExitStatus
	select {
	case done := <-s.running:
		st = s.waitRunc(done)
	case done := <-s.launched:
		var ok bool
		if st, ok = <-done; !ok {
			st = rt.ExitStatus{Code: 255, Error: "the launcher lost the container's exit status"}
		}
		if st.At.IsZero() {
			st.At = time.Now().UTC()
		}
	case <-s.stop:
		// Never started, and no longer wanted.
		s.output.Wait()
		s.logMu.Lock()
		s.logs.Close()
		s.logMu.Unlock()
		return
	}
	s.finish(st)
}

// waitRunc waits for the container runc runs and returns how it ended.
func (s *shim) waitRunc(done <-chan unix.WaitStatus) rt.ExitStatus {
	ws := <-done
	if s.orphan && ws.Signaled() && unix.Kill(s.pid, 0) == nil {
		// runc was killed, not the container: the container is ours now.
		s.log.Warn("runc was killed; waiting for the container itself", "signal", ws.Signal())
		ws = <-s.reaper.Expect(s.pid)
	}
	st := rt.ExitStatus{Code: ws.ExitStatus(), At: time.Now().UTC()}
	if ws.Signaled() {
		st.Signal = ws.Signal()
		st.Code = 128 + int(ws.Signal())
	}
	st.OOMKilled = s.oom.killed()
	s.oom.stop()
	return st
}

// finish records the exit status st once the output is drained, and tells whoever waits.
func (s *shim) finish(st rt.ExitStatus) {
	// The output pipes close when the last process holding them ends; do not wait
	// forever for a process that escaped the container's end.
	drained := make(chan struct{})
	go func() { s.output.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		s.log.Warn("output still open 5s after the container exited; closing it")
	}
	s.logMu.Lock()
	if err := s.logs.Close(); err != nil {
		s.log.Error("close logs", "err", err)
	}
	s.logMu.Unlock()
	if err := writeExit(s.dir, &st); err != nil {
		s.log.Error("record exit", "err", err)
	}
	s.mu.Lock()
	s.exit = &st
	close(s.exited)
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	payload, _ := json.Marshal(st)
	for _, c := range clients {
		select {
		case c.out <- frame{frameExit, payload}:
		case <-c.done:
		}
	}
	// An attached client may still have output queued: the shim stays until each has
	// written its last frame, or gone. (A fixed grace cut a slow reader's last
	// megabytes off.)
	for _, c := range clients {
		<-c.done
	}
	// Give waiters a moment to read their answers before the process goes.
	s.reaper.Wait(200 * time.Millisecond)
}

// writeExit records the exit status in dir, atomically.
func writeExit(dir string, st *rt.ExitStatus) error {
	b, _ := json.Marshal(st)
	tmp := filepath.Join(dir, ExitFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ExitFile))
}

// ReadExit reads the exit status a shim recorded in dir.
func ReadExit(dir string) (*rt.ExitStatus, error) {
	b, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if err != nil {
		return nil, err
	}
	var st rt.ExitStatus
	return &st, json.Unmarshal(b, &st)
}

// serve answers the daemon's connections.
func (s *shim) serve(l *net.UnixListener) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		if !samePeer(c) {
			c.Close()
			continue
		}
		go s.handle(c)
	}
}

// samePeer lets in only processes of the shim's own user: the socket is abstract, so no
// file permission guards it.
func samePeer(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && cred != nil && int(cred.Uid) == os.Getuid()
}

func (s *shim) handle(c *net.UnixConn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var req request
	if err := readJSONLine(r, &req); err != nil {
		return
	}
	switch req.Op {
	case "start":
		writeJSONLine(c, s.start())
	case "wait":
		<-s.exited
		s.mu.Lock()
		st := s.exit
		s.mu.Unlock()
		writeJSONLine(c, response{Exit: st})
	case "state":
		s.mu.Lock()
		resp := response{Pid: s.pid, Exit: s.exit}
		s.mu.Unlock()
		writeJSONLine(c, resp)
	case "resize":
		writeJSONLine(c, s.resize(req.Rows, req.Cols))
	case "shutdown":
		writeJSONLine(c, s.shutdown())
	case "attach":
		s.attach(c, r, req.Stdin)
	default:
		if h, ok := s.launcher.(Handler); ok && h.Handle(req.Op, req.Args, c, r) {
			return
		}
		writeJSONLine(c, response{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

func (s *shim) start() response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return response{Pid: s.pid}
	}
	select {
	case <-s.stop:
		return response{Error: "the shim is shutting down"}
	default:
	}
	// Watch for the OOM killer from before the process runs: runc removes the
	// container's cgroup as soon as it ends.
	s.oom = watchOOM(s.cfg.CgroupsPath)
	pid, err := s.launch()
	if err != nil {
		s.oom.stop()
		s.oom = nil
		return response{Error: err.Error(), Kind: errdefs.KindOf(err)}
	}
	s.started, s.pid = true, pid
	return response{Pid: pid}
}

// shutdown ends a shim whose container never started (it was removed instead).
func (s *shim) shutdown() response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return response{Error: "the container is started: kill it instead"}
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
		for _, f := range s.theirs {
			f.Close() // the copies see EOF
		}
		s.theirs = nil
	}
	return response{}
}

func (s *shim) resize(rows, cols uint16) response {
	if r, ok := s.launcher.(Resizer); ok {
		if err := r.Resize(rows, cols); err != nil {
			return response{Error: err.Error()}
		}
		return response{}
	}
	if s.console == nil {
		return response{Error: "the container has no terminal"}
	}
	if err := unix.IoctlSetWinsize(int(s.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		return response{Error: err.Error()}
	}
	return response{}
}

type frame struct {
	kind byte
	data []byte
}

type client struct {
	out  chan frame
	done chan struct{} // closed when the client is dropped
}

func (s *shim) dropLocked(c *client) {
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		close(c.done)
	}
}

func (s *shim) drop(c *client) {
	s.mu.Lock()
	s.dropLocked(c)
	s.mu.Unlock()
}

// attach streams the container's output to c and, if asked, c's input to the container,
// until the container exits or c goes.
func (s *shim) attach(c *net.UnixConn, r *bufio.Reader, stdin bool) {
	cl := &client{out: make(chan frame, 256), done: make(chan struct{})}
	s.mu.Lock()
	if s.exit != nil {
		st := s.exit
		s.mu.Unlock()
		writeJSONLine(c, response{})
		payload, _ := json.Marshal(st)
		writeFrame(c, frameExit, payload)
		return
	}
	s.clients[cl] = struct{}{}
	s.mu.Unlock()
	defer s.drop(cl)
	if err := writeJSONLine(c, response{}); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if stdin {
		go s.readInput(ctx, r, cancel)
	} else {
		go func() {
			io.Copy(io.Discard, r)
			cancel()
		}()
	}
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		select {
		case f := <-cl.out:
			if writeFrame(w, f.kind, f.data) != nil {
				return
			}
			if len(cl.out) == 0 || f.kind == frameExit {
				if w.Flush() != nil || f.kind == frameExit {
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// readInput passes a client's input frames to the container.
func (s *shim) readInput(ctx context.Context, r *bufio.Reader, gone func()) {
	defer gone()
	var buf []byte
	for {
		kind, data, err := readFrame(r, buf)
		if err != nil {
			return
		}
		buf = data
		if s.cfg.Tty {
			// Input typed before the container's terminal exists waits for it.
			select {
			case <-s.consoleReady:
			case <-ctx.Done():
				return
			}
		}
		switch kind {
		case frameStdin:
			s.stdinMu.Lock()
			target := s.stdin
			if s.cfg.Tty {
				target = s.console
			}
			if target != nil {
				target.Write(data)
			}
			s.stdinMu.Unlock()
		case frameStdinClose:
			s.stdinMu.Lock()
			if s.cfg.Tty {
				// On a terminal, end of input is the EOF character (Ctrl-D).
				s.console.Write([]byte{4})
			} else if s.stdin != nil {
				s.stdin.Close()
				s.stdin = nil
			}
			s.stdinMu.Unlock()
		}
	}
}

// listen listens on an abstract unix socket.
func listen(name string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
}

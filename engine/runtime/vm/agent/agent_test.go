//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/internal/reaper"
)

// socketpair returns the two ends of a connected stream socket pair.
func socketpair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	host, guest = conn(fds[0], "host"), conn(fds[1], "guest")
	t.Cleanup(func() { host.Close(); guest.Close() })
	return host, guest
}

// children reaps for every agent of the tests: two reapers in one process would take
// each other's children.
var children = reaper.New()

// serve runs an agent on the host (not as init) over a socketpair and returns the host's
// client, set up with "/" as the container's root.
func serve(t *testing.T) *proto.Client {
	t.Helper()
	host, guest := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- agent.Serve(guest, agent.Options{Kernel: "test", Reaper: children}) }()
	c, err := proto.Handshake(host)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hello.Kernel != "test" {
		t.Errorf("hello reports kernel %q", c.Hello.Kernel)
	}
	if err := c.Call(context.Background(), proto.OpSetup, proto.Setup{Root: "/"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("the agent did not end when the host closed the connection")
		}
	})
	return c
}

// buffer is a bytes.Buffer safe for the client's reader and the test.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func process(id uint32, args ...string) *proto.Process {
	return &proto.Process{ID: id, Args: args, Env: []string{"PATH=/usr/bin:/bin"}, Cwd: "/",
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

func waitExit(t *testing.T, p *proto.Proc) proto.ExitStatus {
	t.Helper()
	select {
	case st, ok := <-p.Exit():
		if !ok {
			t.Fatal("the conversation ended before the exit status")
		}
		return st
	case <-time.After(20 * time.Second):
		t.Fatal("no exit status after 20s")
	}
	return proto.ExitStatus{}
}

func TestRunOutputAndExitCode(t *testing.T) {
	c := serve(t)
	var out, errb buffer
	p, err := c.Start(context.Background(), process(2, "sh", "-c", "echo out; echo err >&2; exit 3"), &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid <= 0 {
		t.Errorf("pid %d", p.Pid)
	}
	st := waitExit(t, p)
	if st.Code != 3 || st.Signal != 0 {
		t.Errorf("exit %+v, want code 3", st)
	}
	if out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestStdinAndLargeOutput(t *testing.T) {
	c := serve(t)
	var out buffer
	pr := process(2, "cat")
	pr.Stdin = true
	p, err := c.Start(context.Background(), pr, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	// More than one frame's worth, both ways.
	in := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	if _, err := p.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, p); st.Code != 0 {
		t.Errorf("exit %+v", st)
	}
	if out.String() != string(in) {
		t.Errorf("got %d bytes back, want %d", len(out.String()), len(in))
	}
}

func TestSignal(t *testing.T) {
	c := serve(t)
	p, err := c.Start(context.Background(), process(2, "sleep", "60"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(context.Background(), int(syscall.SIGTERM), false); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, p); st.Code != 128+int(syscall.SIGTERM) || st.Signal != int(syscall.SIGTERM) {
		t.Errorf("exit %+v, want SIGTERM", st)
	}
}

func TestTerminal(t *testing.T) {
	c := serve(t)
	var out buffer
	pr := process(2, "sh", "-c", "tty; stty size; read line; echo got $line")
	pr.Terminal, pr.Stdin, pr.Rows, pr.Cols = true, true, 30, 100
	p, err := c.Start(context.Background(), pr, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("hello\n"))
	if st := waitExit(t, p); st.Code != 0 {
		t.Errorf("exit %+v; output %q", st, out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "30 100\n") || !strings.Contains(got, "got hello\n") {
		t.Errorf("output %q", got)
	}
}

func TestStartErrors(t *testing.T) {
	c := serve(t)
	_, err := c.Start(context.Background(), process(2, "no-such-command"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("missing command: %v", err)
	}
	p, err := c.Start(context.Background(), process(3, "sleep", "60"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Signal(context.Background(), int(syscall.SIGKILL), false)
	if _, err := c.Start(context.Background(), process(3, "true"), nil, nil); err == nil {
		t.Error("a second process 3 started")
	}
	if err := c.Call(context.Background(), "frobnicate", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown request") {
		t.Errorf("unknown request: %v", err)
	}
	if err := c.Call(context.Background(), proto.OpSetup, proto.Setup{Root: "/"}, nil); err == nil {
		t.Error("a second setup succeeded")
	}
}

func TestStats(t *testing.T) {
	c := serve(t)
	var st proto.Stats
	if err := c.Call(context.Background(), proto.OpStats, nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.CPUNanos == 0 || st.MemoryBytes == 0 || st.MemoryLimit < st.MemoryBytes {
		t.Errorf("stats %+v", st)
	}
}

func TestVersionMismatch(t *testing.T) {
	host, guest := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- agent.Serve(guest, agent.Options{Reaper: children}) }()
	conn := proto.NewConn(host)
	if err := conn.WriteJSON(proto.KindHello, 0, proto.Hello{Version: proto.Version + 1}); err != nil {
		t.Fatal(err)
	}
	kind, _, p, err := conn.Read()
	if err != nil || kind != proto.KindHello || !strings.Contains(string(p), "not") {
		t.Errorf("answer %d %q %v", kind, p, err)
	}
	if err := <-served; err == nil {
		t.Error("the agent served a host of another version")
	}
}

// TestInputNeverBlocksTheConversation sends a process that never reads more input than
// any pipe holds: the agent still answers, and the process can still be killed.
func TestInputNeverBlocksTheConversation(t *testing.T) {
	c := serve(t)
	pr := process(2, "sleep", "60")
	pr.Stdin = true
	p, err := c.Start(context.Background(), pr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// In 32 KiB frames, as the shim sends what it reads: many more frames than there
	// are bytes in a pipe.
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for range 128 {
		if _, err := p.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, proto.OpStats, nil, &proto.Stats{}); err != nil {
		t.Fatalf("stats after 4 MiB of unread input: %v", err)
	}
	if err := p.Signal(ctx, int(syscall.SIGKILL), false); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, p); st.Signal != int(syscall.SIGKILL) {
		t.Errorf("exit %+v", st)
	}
}

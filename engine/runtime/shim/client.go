//go:build linux

package shim

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
	"strings"
	"sync"
	"syscall"
	"time"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/frames"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Spare is a shim started ahead of need, waiting for its container: a start then waits
// for no process to come up but runc. It runs in a session of its own, and ends if the
// daemon goes before handing it a container.
type Spare struct {
	cmd    *exec.Cmd
	in     *os.File
	out    *os.File
	exited chan struct{}
}

// StartSpare starts `self shim --spare`.
func StartSpare(self string) (*Spare, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(self, "shim", "--spare")
	cmd.Stdin, cmd.Stdout = inR, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	sp := &Spare{cmd: cmd, in: inW, out: outR, exited: make(chan struct{})}
	// The daemon reaps its own children; a shim that outlives the daemon is reaped by
	// whoever inherits it.
	go func() { cmd.Wait(); close(sp.exited) }()
	return sp, nil
}

// Use hands the spare the container described by cfg, with dir as its state directory,
// and returns once the shim is ready to start it (Client.Start).
func (sp *Spare) Use(ctx context.Context, dir string, cfg *Config) error {
	defer sp.out.Close()
	cfg.Socket = newSocketName()
	data, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o600); err != nil {
		return err
	}
	_, err = sp.in.WriteString(dir + "\n")
	sp.in.Close()
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	type answer struct {
		line string
		err  error
	}
	lines := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(sp.out).ReadString('\n')
		lines <- answer{strings.TrimSpace(line), err}
	}()
	select {
	case a := <-lines:
		if word, rest, _ := strings.Cut(a.line, " "); word == "ready" {
			return nil
		} else if word == "error" {
			return errors.New(rest)
		}
		<-sp.exited
		return fmt.Errorf("shim exited without an answer: %s", lastLines(filepath.Join(dir, LogFile)))
	case <-ctx.Done():
		sp.cmd.Process.Kill()
		return ctx.Err()
	}
}

// Close ends a spare that was not used.
func (sp *Spare) Close() {
	sp.in.Close()
	sp.out.Close()
}

// Spawn starts a shim for the container described by cfg, with dir as its state
// directory, and returns once it is ready to start the container (Client.Start).
func Spawn(ctx context.Context, self, dir string, cfg *Config) error {
	sp, err := StartSpare(self)
	if err != nil {
		return err
	}
	return sp.Use(ctx, dir, cfg)
}

func lastLines(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// Client talks to the shim whose state directory is dir.
type Client struct {
	dir string
}

// NewClient returns a client of the shim of state directory dir.
func NewClient(dir string) *Client { return &Client{dir: dir} }

// ErrGone is returned when no shim answers: it exited, or was killed.
var ErrGone = errors.New("the container's shim is gone")

func (c *Client) call(ctx context.Context, req request) (net.Conn, *bufio.Reader, *response, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, ConfigFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrGone, err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil || cfg.Socket == "" {
		return nil, nil, nil, fmt.Errorf("%w: %s has no socket", ErrGone, ConfigFile)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", cfg.Socket)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrGone, err)
	}
	if err := writeJSONLine(conn, req); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrGone, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	r := bufio.NewReader(conn)
	var resp response
	err = readJSONLine(r, &resp)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrGone, err)
	}
	if resp.Error != "" {
		conn.Close()
		return nil, nil, nil, errdefs.WithKinds(resp.Kind, errors.New(resp.Error))
	}
	return conn, r, &resp, nil
}

// Start starts the container's process.
func (c *Client) Start(ctx context.Context) (int, error) {
	conn, _, resp, err := c.call(ctx, request{Op: "start"})
	if err != nil {
		return 0, err
	}
	conn.Close()
	return resp.Pid, nil
}

// State returns the container's pid and, once it exited, its exit status.
func (c *Client) State(ctx context.Context) (int, *rt.ExitStatus, error) {
	conn, _, resp, err := c.call(ctx, request{Op: "state"})
	if err != nil {
		return 0, nil, err
	}
	conn.Close()
	return resp.Pid, resp.Exit, nil
}

// Wait waits until the container exits and returns how. If the shim goes first, the
// error wraps ErrGone.
func (c *Client) Wait(ctx context.Context) (*rt.ExitStatus, error) {
	conn, _, resp, err := c.call(ctx, request{Op: "wait"})
	if err != nil {
		return nil, err
	}
	conn.Close()
	if resp.Exit == nil {
		return nil, fmt.Errorf("%w: no exit status", ErrGone)
	}
	return resp.Exit, nil
}

// Shutdown ends a shim whose container never started.
func (c *Client) Shutdown(ctx context.Context) error {
	conn, _, _, err := c.call(ctx, request{Op: "shutdown"})
	if err != nil {
		return err
	}
	return conn.Close()
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, rows, cols uint16) error {
	conn, _, _, err := c.call(ctx, request{Op: "resize", Rows: rows, Cols: cols})
	if err != nil {
		return err
	}
	return conn.Close()
}

// Do makes a launcher's request and, if result is not nil, decodes its result into it.
func (c *Client) Do(ctx context.Context, op string, args, result any) error {
	conn, _, err := c.Open(ctx, op, args, result)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Open makes a launcher's request and returns the connection, for an op that streams
// after its answer.
func (c *Client) Open(ctx context.Context, op string, args, result any) (net.Conn, *bufio.Reader, error) {
	req := request{Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, nil, err
		}
		req.Args = b
	}
	conn, r, resp, err := c.call(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	return conn, r, nil
}

// Attach streams the container's output to s until it exits (or ctx ends), and s.Stdin,
// if set, to its input. It returns the exit status when the container exited.
func (c *Client) Attach(ctx context.Context, s rt.Streams) (*rt.ExitStatus, error) {
	conn, r, _, err := c.call(ctx, request{Op: "attach", Stdin: s.Stdin != nil})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if s.Attached != nil {
		s.Attached()
	}
	return Stream(ctx, conn, r, s, nil)
}

// Stream carries a process's streams on conn, framed (engine/runtime/frames): s.Stdin
// and the terminal sizes from resize to it, its output from it to s, until the exit
// frame, which it returns. It ends early, with ctx's error, when ctx ends.
func Stream(ctx context.Context, conn net.Conn, r *bufio.Reader, s rt.Streams, resize <-chan [2]uint16) (*rt.ExitStatus, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	w := bufio.NewWriter(conn)
	send := func(kind byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		if err := writeFrame(w, kind, p); err != nil {
			return err
		}
		return w.Flush()
	}
	if s.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 {
					if send(frameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					send(frameStdinClose, nil)
					return
				}
			}
		}()
	}
	if resize != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case sz := <-resize:
					b, _ := json.Marshal(sz)
					if send(frames.Resize, b) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	var buf []byte
	for {
		kind, data, err := readFrame(r, buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			return nil, err
		}
		buf = data
		switch kind {
		case frameStdout:
			if s.Stdout != nil {
				if _, err := s.Stdout.Write(data); err != nil {
					return nil, err
				}
			}
		case frameStderr:
			if s.Stderr != nil {
				if _, err := s.Stderr.Write(data); err != nil {
					return nil, err
				}
			}
		}
		if r.Buffered() == 0 || kind == frameExit {
			for _, w := range []io.Writer{s.Stdout, s.Stderr} {
				if f, ok := w.(rt.Flusher); ok {
					if err := f.Flush(); err != nil {
						return nil, err
					}
				}
			}
		}
		switch kind {
		case frameExit:
			var st rt.ExitStatus
			if err := json.Unmarshal(data, &st); err != nil {
				return nil, err
			}
			return &st, nil
		}
	}
}

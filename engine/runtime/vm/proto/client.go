package proto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrClosed is returned by calls on a conversation that ended.
var ErrClosed = errors.New("the guest agent's connection is closed")

// Client is the host's end of a conversation with an agent.
type Client struct {
	conn *Conn
	// Hello is the agent's.
	Hello Hello

	mu    sync.Mutex
	next  uint32
	calls map[uint32]chan Response
	procs map[uint32]*Proc
	err   error
	done  chan struct{}
}

// WriteTimeout bounds each of the host's writes: a guest that stops reading for that
// long has failed, and its conversation ends (and the VM with it).
const WriteTimeout = 30 * time.Second

// Handshake opens a conversation on rw: it sends the host's Hello and reads the agent's.
// To give up waiting, close rw.
func Handshake(rw io.ReadWriteCloser) (*Client, error) {
	conn := NewConn(rw)
	conn.SetWriteTimeout(WriteTimeout)
	if err := conn.WriteJSON(KindHello, 0, Hello{Version: Version}); err != nil {
		return nil, err
	}
	kind, _, p, err := conn.Read()
	if err != nil {
		return nil, fmt.Errorf("read the agent's hello: %w", err)
	}
	var h Hello
	if kind != KindHello || json.Unmarshal(p, &h) != nil {
		return nil, fmt.Errorf("the agent did not answer with a hello (frame kind %d)", kind)
	}
	if h.Error != "" {
		return nil, fmt.Errorf("agent: %s", h.Error)
	}
	if h.Version != Version {
		return nil, fmt.Errorf("the agent speaks version %d, not %d", h.Version, Version)
	}
	c := &Client{conn: conn, Hello: h, calls: map[uint32]chan Response{}, procs: map[uint32]*Proc{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// Done is closed when the conversation ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the conversation ended (io.EOF when the agent closed it), or nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the conversation.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) read() {
	var err error
	defer func() { c.fail(err) }()
	for {
		var kind byte
		var id uint32
		var p []byte
		kind, id, p, err = c.conn.Read()
		if err != nil {
			return
		}
		switch kind {
		case KindResponse:
			var r Response
			if err = json.Unmarshal(p, &r); err != nil {
				return
			}
			c.mu.Lock()
			ch := c.calls[id]
			delete(c.calls, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		case KindStdout, KindStderr:
			c.mu.Lock()
			pr := c.procs[id]
			c.mu.Unlock()
			if pr == nil {
				continue
			}
			w := pr.stdout
			if kind == KindStderr {
				w = pr.stderr
			}
			if w != nil {
				w.Write(p)
			}
		case KindExit:
			var st ExitStatus
			if err = json.Unmarshal(p, &st); err != nil {
				return
			}
			c.mu.Lock()
			pr := c.procs[id]
			delete(c.procs, id)
			c.mu.Unlock()
			if pr != nil {
				pr.exit <- st
				close(pr.exit)
			}
		default:
			err = fmt.Errorf("unexpected frame of kind %d from the agent", kind)
			return
		}
	}
}

// fail ends the conversation: calls in flight fail, and processes' Exit channels close
// without a status.
func (c *Client) fail(err error) {
	c.conn.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if err == nil {
		err = io.EOF
	}
	c.err = err
	for id, ch := range c.calls {
		close(ch)
		delete(c.calls, id)
	}
	for id, p := range c.procs {
		close(p.exit)
		delete(c.procs, id)
	}
	close(c.done)
}

// Call sends a request and waits for its answer; result, if not nil, receives the
// answer's result.
func (c *Client) Call(ctx context.Context, op string, args, result any) error {
	req := Request{Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = b
	}
	ch := make(chan Response, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: %v", ErrClosed, c.err)
	}
	c.next++
	id := c.next
	c.calls[id] = ch
	c.mu.Unlock()
	if err := c.conn.WriteJSON(KindRequest, id, req); err != nil {
		c.fail(err)
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("%w: %v", ErrClosed, c.Err())
		}
		if r.Error != "" {
			return errors.New(r.Error)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Proc is a process started through the agent.
type Proc struct {
	ID  uint32
	Pid int // in the guest

	c              *Client
	stdout, stderr io.Writer
	exit           chan ExitStatus
}

// Start starts p in the container. Its output goes to stdout and stderr (written from
// the conversation's reader: a slow writer holds up the whole conversation). Its input,
// if p.Stdin, comes from Proc.Write.
func (c *Client) Start(ctx context.Context, p *Process, stdout, stderr io.Writer) (*Proc, error) {
	pr := &Proc{ID: p.ID, c: c, stdout: stdout, stderr: stderr, exit: make(chan ExitStatus, 1)}
	c.mu.Lock()
	if c.procs[p.ID] != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("process %d exists already", p.ID)
	}
	c.procs[p.ID] = pr
	c.mu.Unlock()
	var st Started
	if err := c.Call(ctx, OpStart, p, &st); err != nil {
		c.mu.Lock()
		if c.procs[p.ID] == pr {
			delete(c.procs, p.ID)
		}
		c.mu.Unlock()
		return nil, err
	}
	pr.Pid = st.Pid
	return pr, nil
}

// Exit yields the process's exit status once, then closes. If the conversation ends
// first, it closes without a value.
func (p *Proc) Exit() <-chan ExitStatus { return p.exit }

// Write sends input to the process.
func (p *Proc) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), MaxPayload/2)]
		if err := p.c.conn.Write(KindStdin, p.ID, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		b = b[len(chunk):]
	}
	return n, nil
}

// CloseStdin ends the process's input.
func (p *Proc) CloseStdin() error { return p.c.conn.Write(KindStdinClose, p.ID, nil) }

// Signal sends sig to the process, or to every process of the container with all.
func (p *Proc) Signal(ctx context.Context, sig int, all bool) error {
	return p.c.Call(ctx, OpSignal, Signal{ID: p.ID, Signal: sig, All: all}, nil)
}

// SignalGroup sends sig to the process and its children (its process group).
func (p *Proc) SignalGroup(ctx context.Context, sig int) error {
	return p.c.Call(ctx, OpSignal, Signal{ID: p.ID, Signal: sig, Group: true}, nil)
}

// Resize sets the size of the process's terminal.
func (p *Proc) Resize(ctx context.Context, rows, cols uint16) error {
	return p.c.Call(ctx, OpResize, Resize{ID: p.ID, Rows: rows, Cols: cols}, nil)
}

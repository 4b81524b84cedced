package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine"
)

// ContainerCreate creates a container.
func (c *Client) ContainerCreate(ctx context.Context, name string, spec engine.Spec) (*Container, error) {
	var v Container
	return &v, c.sendJSON(ctx, http.MethodPost, "/containers", nil, CreateRequest{Name: name, Spec: spec}, &v)
}

// ContainerList lists running containers, or all with all.
func (c *Client) ContainerList(ctx context.Context, all bool) ([]*Container, error) {
	var v []*Container
	q := url.Values{}
	if all {
		q.Set("all", "true")
	}
	return v, c.getJSON(ctx, "/containers", q, &v)
}

// ContainerInspect returns a container's record.
func (c *Client) ContainerInspect(ctx context.Context, id string) (*Container, error) {
	var v Container
	return &v, c.getJSON(ctx, "/containers/"+url.PathEscape(id), nil, &v)
}

func (c *Client) containerPost(ctx context.Context, id, verb string, q url.Values) error {
	return c.sendJSON(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/"+verb, q, nil, nil)
}

// ContainerStart starts a container.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "start", nil)
}

func timeoutQuery(timeout *int) url.Values {
	q := url.Values{}
	if timeout != nil {
		q.Set("timeout", strconv.Itoa(*timeout))
	}
	return q
}

// ContainerStop stops a container, waiting timeout seconds (nil: its own) before SIGKILL.
func (c *Client) ContainerStop(ctx context.Context, id string, timeout *int) error {
	return c.containerPost(ctx, id, "stop", timeoutQuery(timeout))
}

// ContainerRestart restarts a container.
func (c *Client) ContainerRestart(ctx context.Context, id string, timeout *int) error {
	return c.containerPost(ctx, id, "restart", timeoutQuery(timeout))
}

// ContainerKill sends a signal (name or number; "" is KILL).
func (c *Client) ContainerKill(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.containerPost(ctx, id, "kill", q)
}

// ContainerPause freezes a container; ContainerUnpause thaws it.
func (c *Client) ContainerPause(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "pause", nil)
}

func (c *Client) ContainerUnpause(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "unpause", nil)
}

// ContainerRename renames a container.
func (c *Client) ContainerRename(ctx context.Context, id, name string) error {
	return c.containerPost(ctx, id, "rename", url.Values{"name": {name}})
}

// ContainerResize sets a container's terminal size.
func (c *Client) ContainerResize(ctx context.Context, id string, rows, cols uint16) error {
	return c.containerPost(ctx, id, "resize", url.Values{"rows": {strconv.Itoa(int(rows))}, "cols": {strconv.Itoa(int(cols))}})
}

// ContainerRemove removes a container; with volumes, its anonymous volumes too.
func (c *Client) ContainerRemove(ctx context.Context, id string, force, volumes bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "true")
	}
	if volumes {
		q.Set("volumes", "true")
	}
	return c.sendJSON(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), q, nil, nil)
}

// ContainerWait waits for a condition (not-running, next-exit, removed) and returns the
// exit code.
func (c *Client) ContainerWait(ctx context.Context, id, condition string) (int, error) {
	var v WaitResponse
	q := url.Values{}
	if condition != "" {
		q.Set("condition", condition)
	}
	err := c.sendJSON(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/wait", q, nil, &v)
	return v.ExitCode, err
}

// Stats is a container's resource use.
type Stats struct {
	CPUNanos    uint64    `json:"cpuNanos"`
	MemoryBytes uint64    `json:"memoryBytes"`
	MemoryLimit uint64    `json:"memoryLimit"`
	Pids        uint64    `json:"pids"`
	At          time.Time `json:"at"`
}

// ContainerStats reads a running container's resource use.
func (c *Client) ContainerStats(ctx context.Context, id string) (*Stats, error) {
	var v Stats
	return &v, c.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/stats", nil, &v)
}

// LogsOptions select what ContainerLogs shows.
type LogsOptions struct {
	Follow     bool
	Tail       string // "all" or a number
	Timestamps bool
	Since      string
	Until      string
	Stream     string // "", "stdout" or "stderr"
}

// ContainerLogs writes a container's output to stdout and stderr.
func (c *Client) ContainerLogs(ctx context.Context, id string, o LogsOptions, stdout, stderr io.Writer) error {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Timestamps {
		q.Set("timestamps", "true")
	}
	for k, v := range map[string]string{"tail": o.Tail, "since": o.Since, "until": o.Until, "stream": o.Stream} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = copyFrames(bufio.NewReaderSize(resp.Body, 64<<10), stdout, stderr)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// copyFrames writes output frames to stdout and stderr until an exit frame or the end.
// Output is written in large pieces while frames keep coming, at once when they pause.
func copyFrames(r *bufio.Reader, stdout, stderr io.Writer) (*ExitFrame, error) {
	out, errOut := bufio.NewWriterSize(stdout, 256<<10), bufio.NewWriterSize(stderr, 64<<10)
	defer out.Flush()
	defer errOut.Flush()
	var buf []byte
	for {
		kind, data, err := ReadFrame(r, buf)
		if err != nil {
			return nil, err
		}
		buf = data
		switch kind {
		case FrameStdout:
			if _, err := out.Write(data); err != nil {
				return nil, err
			}
		case FrameStderr:
			if _, err := errOut.Write(data); err != nil {
				return nil, err
			}
		}
		if r.Buffered() == 0 || kind == FrameExit {
			if err := out.Flush(); err != nil {
				return nil, err
			}
			if err := errOut.Flush(); err != nil {
				return nil, err
			}
		}
		switch kind {
		case FrameExit:
			var f ExitFrame
			if err := json.Unmarshal(data, &f); err != nil {
				return nil, err
			}
			if f.Error != nil {
				return &f, f.Error
			}
			return &f, nil
		}
	}
}

// StreamOptions connect a process's streams to the caller's.
type StreamOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize carries terminal sizes to send.
	Resize <-chan ResizeFrame
	// Size is the terminal's size at start (start with attach only).
	Size *ResizeFrame
}

// ContainerStartAttach starts a container with the streams attached before it starts,
// and returns its exit code once it exits.
func (c *Client) ContainerStartAttach(ctx context.Context, id string, o StreamOptions) (int, error) {
	q := url.Values{"attach": {"true"}}
	if o.Stdin != nil {
		q.Set("stdin", "true")
	}
	if o.Size != nil {
		q.Set("rows", strconv.Itoa(int(o.Size.Rows)))
		q.Set("cols", strconv.Itoa(int(o.Size.Cols)))
	}
	return c.upgradeStream(ctx, "/containers/"+url.PathEscape(id)+"/start", q, nil, o)
}

// ContainerAttach attaches to a running container until it exits.
func (c *Client) ContainerAttach(ctx context.Context, id string, o StreamOptions) (int, error) {
	q := url.Values{}
	if o.Stdin != nil {
		q.Set("stdin", "true")
	}
	return c.upgradeStream(ctx, "/containers/"+url.PathEscape(id)+"/attach", q, nil, o)
}

// ContainerExec runs a process in a container and returns its exit code.
func (c *Client) ContainerExec(ctx context.Context, id string, req ExecRequest, o StreamOptions) (int, error) {
	req.Stdin = o.Stdin != nil
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	return c.upgradeStream(ctx, "/containers/"+url.PathEscape(id)+"/exec", nil, body, o)
}

// upgradeStream opens an upgraded connection and carries frames until the exit frame.
func (c *Client) upgradeStream(ctx context.Context, path string, q url.Values, body []byte, o StreamOptions) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.host)
	if err != nil {
		return 0, &Unreachable{Socket: c.host, Err: err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", UpgradeProtocol)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := req.Write(conn); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return 0, decodeError(resp)
	}
	w := newLockedWriter(conn)
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 && w.frame(FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					w.frame(FrameStdinClose, nil)
					return
				}
			}
		}()
	}
	if o.Resize != nil {
		go func() {
			for rs := range o.Resize {
				payload, _ := json.Marshal(rs)
				if w.frame(FrameResize, payload) != nil {
					return
				}
			}
		}()
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	f, err := copyFrames(br, stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("the daemon closed the stream before the process ended (did it stop?)")
		}
		return 0, err
	}
	return f.ExitCode, nil
}

// EventsOptions select events.
type EventsOptions struct {
	Since, Until    string
	Type, Container string
	Follow          bool
}

// Events reads events, calling fn for each, until fn fails, the stream ends (without
// Follow, or at Until) or ctx ends.
func (c *Client) Events(ctx context.Context, o EventsOptions, fn func(Event) error) error {
	q := url.Values{"follow": {strconv.FormatBool(o.Follow)}}
	for k, v := range map[string]string{"since": o.Since, "until": o.Until, "type": o.Type, "container": o.Container} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := c.do(ctx, http.MethodGet, "/events", q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e Event
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

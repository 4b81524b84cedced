package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

func (s *Server) containerCreate(w http.ResponseWriter, r *http.Request) error {
	var req CreateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	c, err := s.eng.Create(r.Context(), req.Name, req.Spec)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, c)
}

func (s *Server) containerList(w http.ResponseWriter, r *http.Request) error {
	all, err := boolParam(r.URL.Query().Get("all"))
	if err != nil {
		return err
	}
	out := []*engine.Container{}
	for _, c := range s.eng.List() {
		if all || c.State != engine.Stopped && c.State != engine.Created {
			out = append(out, c)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) containerInspect(w http.ResponseWriter, r *http.Request) error {
	c, err := s.eng.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// timeoutParam reads ?timeout=SECONDS.
func timeoutParam(r *http.Request) (*time.Duration, error) {
	v := r.URL.Query().Get("timeout")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return nil, badRequest("invalid timeout %q: want whole seconds", v)
	}
	d := time.Duration(n) * time.Second
	return &d, nil
}

func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) containerStart(w http.ResponseWriter, r *http.Request) error {
	attach, err := boolParam(r.URL.Query().Get("attach"))
	if err != nil {
		return err
	}
	if !attach {
		if err := s.eng.Start(r.Context(), r.PathValue("id"), engine.StartOptions{}); err != nil {
			return err
		}
		return noContent(w)
	}
	c, err := s.eng.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	stdin, _ := boolParam(q.Get("stdin"))
	var size [2]uint16
	if rows, err := strconv.ParseUint(q.Get("rows"), 10, 16); err == nil {
		if cols, err := strconv.ParseUint(q.Get("cols"), 10, 16); err == nil {
			size = [2]uint16{uint16(rows), uint16(cols)}
		}
	}
	return s.upgrade(w, r, stdin && c.Spec.OpenStdin, c.Spec.Tty, s.resizer(c.ID), func(ctx context.Context, up *upgraded) {
		attached := make(chan engine.AttachResult, 1)
		opts := engine.StartOptions{Attach: &up.streams, Attached: attached, ConsoleSize: size, AttachContext: ctx}
		if err := s.eng.Start(ctx, c.ID, opts); err != nil {
			up.exit(0, err)
			return
		}
		s.endAttach(ctx, up, c, <-attached)
	})
}

// endAttach sends the exit frame of an attached stream: the exit of the run that the
// stream followed (a restart policy may already have started the next one), once a
// container removed on exit is gone, as docker run --rm waits.
func (s *Server) endAttach(ctx context.Context, up *upgraded, c *engine.Container, res engine.AttachResult) {
	switch {
	case res.Err != nil:
		up.exit(0, res.Err)
	case res.Exit == nil:
		// The stream ended before the process (the client went).
	default:
		// Answer once the engine has recorded the exit (inspect right after shows it).
		if _, err := s.eng.WaitExit(ctx, c.ID, res.Exit.At); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			up.exit(res.Exit.Code, err)
			return
		}
		if c.Spec.AutoRemove {
			if _, err := s.eng.Wait(ctx, c.ID, engine.WaitRemoved); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				up.exit(res.Exit.Code, err)
				return
			}
		}
		up.exit(res.Exit.Code, nil)
	}
}

func (s *Server) containerStop(w http.ResponseWriter, r *http.Request) error {
	timeout, err := timeoutParam(r)
	if err != nil {
		return err
	}
	if err := s.eng.Stop(r.Context(), r.PathValue("id"), timeout); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerRestart(w http.ResponseWriter, r *http.Request) error {
	timeout, err := timeoutParam(r)
	if err != nil {
		return err
	}
	if err := s.eng.Restart(r.Context(), r.PathValue("id"), timeout); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerKill(w http.ResponseWriter, r *http.Request) error {
	sig := syscall.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		parsed, err := engine.ParseSignal(v)
		if err != nil {
			return err
		}
		sig = parsed
	}
	if err := s.eng.Kill(r.Context(), r.PathValue("id"), sig); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerPause(w http.ResponseWriter, r *http.Request) error {
	if err := s.eng.Pause(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerUnpause(w http.ResponseWriter, r *http.Request) error {
	if err := s.eng.Unpause(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerRemove(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r.URL.Query().Get("force"))
	if err != nil {
		return err
	}
	vols, err := boolParam(r.URL.Query().Get("volumes"))
	if err != nil {
		return err
	}
	if err := s.eng.Remove(r.Context(), r.PathValue("id"), engine.RemoveOptions{Force: force, Volumes: vols}); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerRename(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	if name == "" {
		return badRequest("missing query parameter name")
	}
	if err := s.eng.Rename(r.Context(), r.PathValue("id"), name); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) containerWait(w http.ResponseWriter, r *http.Request) error {
	cond := engine.WaitCondition(r.URL.Query().Get("condition"))
	switch cond {
	case "", engine.WaitNotRunning, engine.WaitNextExit, engine.WaitRemoved:
	default:
		return badRequest("invalid condition %q: want not-running, next-exit or removed", cond)
	}
	code, err := s.eng.Wait(r.Context(), r.PathValue("id"), cond)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, WaitResponse{ExitCode: code})
}

func (s *Server) containerStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.eng.Stats(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) containerResize(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	rows, err1 := strconv.ParseUint(q.Get("rows"), 10, 16)
	cols, err2 := strconv.ParseUint(q.Get("cols"), 10, 16)
	if err1 != nil || err2 != nil {
		return badRequest("invalid rows or cols")
	}
	if err := s.eng.Resize(r.Context(), r.PathValue("id"), uint16(rows), uint16(cols)); err != nil {
		return err
	}
	return noContent(w)
}

// containerLogs streams output as frames: FrameStdout, FrameStderr.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var opts logs.ReadOptions
	var err error
	if opts.Follow, err = boolParam(q.Get("follow")); err != nil {
		return err
	}
	timestamps, err := boolParam(q.Get("timestamps"))
	if err != nil {
		return err
	}
	opts.Tail = -1
	if v := q.Get("tail"); v != "" && v != "all" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("invalid tail %q: want a number or all", v)
		}
		opts.Tail = n
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &opts.Since}, {"until", &opts.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return badRequest("invalid %s %q: want RFC 3339 time, Unix seconds or a duration such as 10m", p.name, v)
			}
			*p.t = t
		}
	}
	if v := q.Get("stream"); v != "" {
		switch v {
		case "stdout":
			opts.Streams = []logs.Stream{logs.Stdout}
		case "stderr":
			opts.Streams = []logs.Stream{logs.Stderr}
		default:
			return badRequest("invalid stream %q", v)
		}
	}
	if _, err := s.eng.Get(r.PathValue("id")); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/vnd.dutchman.frames")
	w.WriteHeader(http.StatusOK)
	lw := newLockedWriter(w)
	flusher, _ := w.(http.Flusher)
	stamp := lineStamper{}
	err = s.eng.Logs(r.Context(), r.PathValue("id"), opts, func(e logs.Entry) error {
		kind := FrameStdout
		if e.Stream == logs.Stderr {
			kind = FrameStderr
		}
		data := e.Data
		if timestamps {
			data = stamp.stamp(e.Stream, e.Time, data)
		}
		if err := lw.frame(kind, data); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		payload, _ := json.Marshal(ExitFrame{Error: toError(err)})
		lw.frame(FrameExit, payload)
	}
	return nil
}

// parseTime reads a time as docker logs --since does: RFC 3339, Unix seconds, or a
// duration back from now.
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, err
	}
	return time.Now().Add(-d), nil
}

// lineStamper puts a time at the start of every line of each stream.
type lineStamper struct {
	midLine [3]bool
}

func (l *lineStamper) stamp(s logs.Stream, t time.Time, p []byte) []byte {
	ts := []byte(t.UTC().Format(time.RFC3339Nano) + " ")
	out := make([]byte, 0, len(p)+len(ts)*2)
	for len(p) > 0 {
		if !l.midLine[s] {
			out = append(out, ts...)
		}
		i := strings.IndexByte(string(p), '\n')
		if i < 0 {
			out = append(out, p...)
			l.midLine[s] = true
			break
		}
		out = append(out, p[:i+1]...)
		l.midLine[s] = false
		p = p[i+1:]
	}
	return out
}

func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request) error {
	c, err := s.eng.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	if c.State != engine.Running && c.State != engine.Paused {
		return &engine.StateError{Name: c.Name, State: c.State, Verb: "attach to"}
	}
	stdin, _ := boolParam(r.URL.Query().Get("stdin"))
	return s.upgrade(w, r, stdin && c.Spec.OpenStdin, c.Spec.Tty, s.resizer(c.ID), func(ctx context.Context, up *upgraded) {
		st, err := s.eng.Attach(ctx, c.ID, up.streams)
		s.endAttach(ctx, up, c, engine.AttachResult{Exit: st, Err: err})
	})
}

func (s *Server) containerExec(w http.ResponseWriter, r *http.Request) error {
	var req ExecRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if len(req.Args) == 0 {
		return badRequest("exec: no command")
	}
	if _, err := s.eng.Get(r.PathValue("id")); err != nil {
		return err
	}
	resize := make(chan [2]uint16, 4)
	onResize := func(_ context.Context, rows, cols uint16) {
		select {
		case resize <- [2]uint16{rows, cols}:
		default:
		}
	}
	return s.upgrade(w, r, req.Stdin, req.Tty, onResize, func(ctx context.Context, up *upgraded) {
		cfg := &rt.ExecConfig{Args: req.Args, Env: req.Env, Cwd: req.WorkingDir, User: req.User, Tty: req.Tty}
		code, err := s.eng.Exec(ctx, r.PathValue("id"), cfg, up.streams, resize)
		up.exit(code, err)
	})
}

// upgraded is a connection switched to frames.
type upgraded struct {
	r        *bufio.Reader
	w        *lockedWriter
	streams  rt.Streams
	stdin    *io.PipeWriter
	onResize func(rows, cols uint16)
}

// resizer resizes the terminal of container id.
func (s *Server) resizer(id string) func(ctx context.Context, rows, cols uint16) {
	return func(ctx context.Context, rows, cols uint16) { s.eng.Resize(ctx, id, rows, cols) }
}

// upgrade switches the connection to frames and runs fn with it: the process's streams
// are up.streams (input only with stdin, no separate stderr with tty), and the client's
// resize frames go to resize. The connection closes after fn.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, stdin, tty bool,
	resize func(ctx context.Context, rows, cols uint16), fn func(ctx context.Context, up *upgraded)) error {
	if !strings.EqualFold(r.Header.Get("Upgrade"), UpgradeProtocol) {
		return badRequest("this endpoint needs Upgrade: %s", UpgradeProtocol)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fmt.Errorf("connection cannot be upgraded")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", UpgradeProtocol)
	if err := brw.Flush(); err != nil {
		return nil
	}
	// The request's context ends with the hijack; this one ends when the client goes.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	up := &upgraded{r: brw.Reader, w: newLockedWriter(conn)}
	up.streams.Stdout = &frameWriter{w: up.w, kind: FrameStdout}
	if !tty {
		up.streams.Stderr = &frameWriter{w: up.w, kind: FrameStderr}
	}
	// Whoever writes the output flushes when it has no more at hand (Streams.Stdout
	// is a Flusher); a final flush in any case.
	defer up.w.flush()
	if stdin {
		pr, pw := io.Pipe()
		up.stdin, up.streams.Stdin = pw, pr
	}
	if resize != nil {
		up.onResize = func(rows, cols uint16) { resize(ctx, rows, cols) }
	}
	// Everything the client's frames reach is in place before they are read.
	go up.readClient(cancel)
	fn(ctx, up)
	return nil
}

// readClient reads the client's frames until it goes, which cancels the stream.
func (up *upgraded) readClient(gone context.CancelFunc) {
	defer gone()
	var buf []byte
	for {
		kind, data, err := ReadFrame(up.r, buf)
		if err != nil {
			if up.stdin != nil {
				up.stdin.CloseWithError(io.EOF)
			}
			return
		}
		buf = data
		switch kind {
		case FrameStdin:
			if up.stdin != nil {
				up.stdin.Write(data)
			}
		case FrameStdinClose:
			if up.stdin != nil {
				up.stdin.Close()
			}
		case FrameResize:
			var rs ResizeFrame
			if json.Unmarshal(data, &rs) == nil && up.onResize != nil {
				up.onResize(rs.Rows, rs.Cols)
			}
		}
	}
}

func (up *upgraded) exit(code int, err error) {
	f := ExitFrame{ExitCode: code}
	if err != nil && !errors.Is(err, context.Canceled) {
		f.Error = toError(err)
	}
	payload, _ := json.Marshal(f)
	up.w.frame(FrameExit, payload)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var f engine.EventFilter
	f.Type = q.Get("type")
	f.Container = q.Get("container")
	if v := q.Get("since"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return badRequest("invalid since %q", v)
		}
		f.Since = t
	}
	var until time.Time
	if v := q.Get("until"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return badRequest("invalid until %q", v)
		}
		until = t
	}
	follow := true
	if v := q.Get("follow"); v != "" {
		var err error
		if follow, err = boolParam(v); err != nil {
			return err
		}
	}
	if !until.IsZero() {
		follow = follow && until.After(time.Now())
	}
	past, next, cancel := s.eng.Events(f, follow)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(e engine.Event) bool {
		if !until.IsZero() && e.Time.After(until) {
			return false
		}
		if enc.Encode(e) != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for _, e := range past {
		if !send(e) {
			return nil
		}
	}
	if next == nil {
		return nil
	}
	var deadline <-chan time.Time
	if !until.IsZero() {
		deadline = time.After(time.Until(until))
	}
	for {
		select {
		case e, ok := <-next:
			if !ok || !send(e) {
				return nil
			}
		case <-deadline:
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

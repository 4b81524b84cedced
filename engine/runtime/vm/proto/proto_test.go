package proto

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeAgent answers the hello on c, then hands each frame to serve.
func fakeAgent(t *testing.T, c net.Conn, serve func(conn *Conn, kind byte, id uint32, p []byte)) {
	t.Helper()
	conn := NewConn(c)
	go func() {
		kind, _, _, err := conn.Read()
		if err != nil || kind != KindHello {
			return
		}
		conn.WriteJSON(KindHello, 0, Hello{Version: Version, Kernel: "fake"})
		for {
			kind, id, p, err := conn.Read()
			if err != nil {
				return
			}
			serve(conn, kind, id, append([]byte(nil), p...))
		}
	}()
}

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(nopCloser{&buf})
	if err := c.Write(KindStdout, 7, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(KindExit, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(KindStdout, 1, make([]byte, MaxPayload+1)); err == nil {
		t.Error("a frame over MaxPayload was written")
	}
	kind, id, p, err := c.Read()
	if err != nil || kind != KindStdout || id != 7 || string(p) != "hello" {
		t.Errorf("read %d %d %q %v", kind, id, p, err)
	}
	if kind, id, p, err = c.Read(); err != nil || kind != KindExit || id != 7 || len(p) != 0 {
		t.Errorf("read %d %d %q %v", kind, id, p, err)
	}
	// A header that announces too much is refused before anything is allocated.
	var h [9]byte
	h[0] = KindStdout
	binary.BigEndian.PutUint32(h[5:], MaxPayload+1)
	buf.Write(h[:])
	if _, _, _, err := c.Read(); err == nil || !strings.Contains(err.Error(), "too big") {
		t.Errorf("an oversized frame: %v", err)
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func TestCallsAndStreams(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	fakeAgent(t, guest, func(conn *Conn, kind byte, id uint32, p []byte) {
		var req Request
		json.Unmarshal(p, &req)
		switch req.Op {
		case OpStart:
			var pr Process
			json.Unmarshal(req.Args, &pr)
			conn.WriteJSON(KindResponse, id, Response{Result: json.RawMessage(`{"pid":42}`)})
			conn.Write(KindStdout, pr.ID, []byte("out"))
			conn.Write(KindStderr, pr.ID, []byte("err"))
			conn.WriteJSON(KindExit, pr.ID, ExitStatus{Code: 4})
		default:
			conn.WriteJSON(KindResponse, id, Response{Error: "unknown request " + req.Op})
		}
	})
	c, err := Handshake(host)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hello.Kernel != "fake" {
		t.Errorf("hello %+v", c.Hello)
	}
	var out, errb bytes.Buffer
	p, err := c.Start(context.Background(), &Process{ID: 2, Args: []string{"x"}}, &out, &errb)
	if err != nil || p.Pid != 42 {
		t.Fatalf("start: %+v %v", p, err)
	}
	st, ok := <-p.Exit()
	if !ok || st.Code != 4 || out.String() != "out" || errb.String() != "err" {
		t.Errorf("exit %+v %v, stdout %q, stderr %q", st, ok, out.String(), errb.String())
	}
	if err := c.Call(context.Background(), "frobnicate", nil, nil); err == nil || err.Error() != "unknown request frobnicate" {
		t.Errorf("an error answer: %v", err)
	}
}

func TestConnectionLoss(t *testing.T) {
	host, guest := net.Pipe()
	started := make(chan struct{})
	fakeAgent(t, guest, func(conn *Conn, kind byte, id uint32, p []byte) {
		var req Request
		json.Unmarshal(p, &req)
		if req.Op == OpStart {
			conn.WriteJSON(KindResponse, id, Response{Result: json.RawMessage(`{"pid":1}`)})
			close(started)
			return
		}
		// Never answers: the guest dies.
		guest.Close()
	})
	c, err := Handshake(host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Start(context.Background(), &Process{ID: 1, Args: []string{"x"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := c.Call(context.Background(), OpStats, nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("a call whose answer never comes: %v", err)
	}
	select {
	case _, ok := <-p.Exit():
		if ok {
			t.Error("an exit status came from a lost connection")
		}
	case <-time.After(5 * time.Second):
		t.Error("the process's Exit stayed open after the connection was lost")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done stayed open")
	}
	if err := c.Call(context.Background(), OpStats, nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("a call after the loss: %v", err)
	}
}

func TestHandshakeVersion(t *testing.T) {
	host, guest := net.Pipe()
	go func() {
		conn := NewConn(guest)
		conn.Read()
		conn.WriteJSON(KindHello, 0, Hello{Version: Version + 1})
	}()
	if _, err := Handshake(host); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("an agent of another version: %v", err)
	}
}

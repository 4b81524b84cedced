package api

import (
	"bufio"
	"io"
	"sync"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/frames"
)

// Attach, exec and start-with-attach upgrade their HTTP connection (Upgrade:
// dutchman-stream, answered 101) to a stream of frames both ways. Logs use the same
// frames in a plain response body. A frame is one kind byte, a big-endian uint32 length,
// and that many bytes.
const (
	// FrameStdin carries input, client to daemon.
	FrameStdin = frames.Stdin
	// FrameStdout and FrameStderr carry output, daemon to client.
	FrameStdout = frames.Stdout
	FrameStderr = frames.Stderr
	// FrameExit ends a stream, daemon to client: an ExitFrame as JSON.
	FrameExit = frames.Exit
	// FrameStdinClose says there is no more input, client to daemon.
	FrameStdinClose = frames.StdinClose
	// FrameResize sets the terminal size, client to daemon: a ResizeFrame as JSON.
	FrameResize = frames.Resize
)

// UpgradeProtocol is the protocol name of an upgraded connection.
const UpgradeProtocol = "dutchman-stream"

// ExitFrame is the payload of FrameExit.
type ExitFrame struct {
	ExitCode int    `json:"exitCode"`
	Error    *Error `json:"error,omitempty"`
}

// ResizeFrame is the payload of FrameResize.
type ResizeFrame struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, kind byte, p []byte) error { return frames.Write(w, kind, p) }

// ReadFrame reads one frame into buf (grown as needed) and returns its kind and payload.
func ReadFrame(r *bufio.Reader, buf []byte) (byte, []byte, error) { return frames.Read(r, buf) }

// frameWriter writes everything written to it as frames of one kind. Its frames are
// buffered until Flush: the writer flushes when it has nothing more at hand, so that a
// stream of small chunks goes out in few writes and a lone keystroke's echo at once.
type frameWriter struct {
	w    *lockedWriter
	kind byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		n := min(len(p), frames.MaxPayload)
		if err := f.w.buffered(f.kind, p[:n]); err != nil {
			return 0, err
		}
		p = p[n:]
	}
	return total, nil
}

// Flush sends the buffered frames.
func (f *frameWriter) Flush() error { return f.w.flush() }

// lockedWriter lets several goroutines write whole frames to one connection.
type lockedWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func newLockedWriter(w io.Writer) *lockedWriter {
	return &lockedWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// frame writes a frame and sends it at once.
func (l *lockedWriter) frame(kind byte, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := WriteFrame(l.w, kind, p); err != nil {
		return err
	}
	return l.w.Flush()
}

// buffered writes a frame to be sent at the next flush.
func (l *lockedWriter) buffered(kind byte, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return WriteFrame(l.w, kind, p)
}

func (l *lockedWriter) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// Package frames is the framing of a process's streams on one connection, used between
// the daemon and a shim and between the daemon and its clients (attach, exec, logs): a
// kind byte, a big-endian uint32 length, and that many bytes.
package frames

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Kinds of frame.
const (
	Stdin      byte = 0 // input, to the process
	Stdout     byte = 1 // output
	Stderr     byte = 2
	Exit       byte = 3 // the process ended: JSON; the last frame
	StdinClose byte = 4 // no more input
	Resize     byte = 5 // the terminal's size: JSON
)

// MaxPayload bounds a frame's payload.
const MaxPayload = 1 << 20

// Write writes one frame.
func Write(w io.Writer, kind byte, p []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// Read reads one frame into buf (grown as needed) and returns its kind and payload.
func Read(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("frame of %d bytes is too big", n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return h[0], buf, err
}

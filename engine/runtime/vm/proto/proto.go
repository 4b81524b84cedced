// Package proto is the protocol between the vm runtime and its guest agent
// (dutchman-agent), over one byte stream: a virtio-serial port or a vsock connection.
//
// Everything travels in frames: a kind byte, a big-endian uint32 id, a big-endian uint32
// length, and that many bytes of payload. Each side's first frame is a Hello; the host
// speaks first, and the agent answers with its own, or with an error if it does not
// speak the host's version.
//
//	Hello      id 0         JSON Hello
//	Request    id request   JSON Request; the agent answers each with one Response
//	Response   id request   JSON Response
//	Stdin      id process   input bytes, host to guest
//	StdinClose id process   no more input
//	Stdout     id process   output bytes, guest to host
//	Stderr     id process
//	Exit       id process   JSON ExitStatus: the process's last frame
//
// Processes are numbered by the host: the container's main process is 1, exec'd ones
// count up from 2. Payloads are at most MaxPayload bytes; output is sent in chunks
// smaller than that. The stream is reliable and ordered, so there are no
// acknowledgements; a side that reads an unknown kind ends the connection.
package proto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Version is the protocol's version. A change that an older peer would misread makes a
// new one.
const Version = 1

// Kinds of frame.
const (
	KindHello      byte = 1
	KindRequest    byte = 2
	KindResponse   byte = 3
	KindStdin      byte = 4
	KindStdinClose byte = 5
	KindStdout     byte = 6
	KindStderr     byte = 7
	KindExit       byte = 8
)

// MaxPayload bounds a frame's payload.
const MaxPayload = 1 << 20

// MainProcess is the id of the container's main process.
const MainProcess = 1

// Hello opens the conversation.
type Hello struct {
	Version int `json:"version"`
	// Error, in the agent's answer, says why it cannot go on (another version).
	Error string `json:"error,omitempty"`
	// Kernel is the guest kernel's release (in the agent's answer).
	Kernel string `json:"kernel,omitempty"`
}

// Operations of a Request.
const (
	OpSetup    = "setup"    // Setup → nothing
	OpStart    = "start"    // Process → Started
	OpSignal   = "signal"   // Signal → nothing
	OpResize   = "resize"   // Resize → nothing
	OpStats    = "stats"    // nothing → Stats
	OpShutdown = "shutdown" // nothing → nothing; the guest syncs and powers off
)

// Request asks the agent to do something.
type Request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Setup prepares the container's root before its process starts.
type Setup struct {
	// Root is the container's root directory, in the guest.
	Root string `json:"root"`
	// RootMounts are made first, at absolute paths of the guest, to assemble Root (a
	// block device's file systems under an overlay). A Source "serial:NAME" is the
	// virtio block device whose serial is NAME.
	RootMounts []Mount `json:"rootMounts,omitempty"`
	// Hostname is the container's host name.
	Hostname string `json:"hostname"`
	// Mounts are made in order, their destinations inside Root.
	Mounts []Mount `json:"mounts"`
	// Interfaces are the network's interfaces, matched by MAC address.
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Mount is a mount in the guest: a filesystem (Type, Source and Options as mount(8)
// takes them), or a bind of a guest path with Type "bind".
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

// Interface is a network interface the agent configures.
type Interface struct {
	MAC string `json:"mac"`
	// Name is the name it gets in the guest (eth0, ...).
	Name string `json:"name"`
	// Addresses are in CIDR notation.
	Addresses []string `json:"addresses,omitempty"`
	// Gateway is the default route's next hop, on the first interface that has one.
	Gateway string `json:"gateway,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
}

// Process is a process to start in the container.
type Process struct {
	ID   uint32   `json:"id"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
	UID  uint32   `json:"uid"`
	GID  uint32   `json:"gid"`
	// Groups are additional group ids.
	Groups   []uint32 `json:"groups,omitempty"`
	Terminal bool     `json:"terminal,omitempty"`
	// Stdin keeps the process's input open for Stdin frames; without it the process
	// reads /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// Rows and Cols are the terminal's size at start.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Rlimits are set before the process runs.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
}

// Rlimit is a resource limit (RLIMIT_NOFILE is 7).
type Rlimit struct {
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// Started answers a start.
type Started struct {
	// Pid is the process's pid in the guest.
	Pid int `json:"pid"`
}

// Signal sends a signal to a process; with Group to its process group (the process and
// its children: every process starts a session of its own); with All to every process
// of the container.
type Signal struct {
	ID     uint32 `json:"id"`
	Signal int    `json:"signal"`
	Group  bool   `json:"group,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// Resize sets the size of a process's terminal.
type Resize struct {
	ID   uint32 `json:"id"`
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Stats is the guest's resource use.
type Stats struct {
	CPUNanos    uint64 `json:"cpuNanos"`
	MemoryBytes uint64 `json:"memoryBytes"`
	MemoryLimit uint64 `json:"memoryLimit"`
	Pids        uint64 `json:"pids"`
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
	// OOMKilled tells that the guest kernel's OOM killer ended it.
	OOMKilled bool `json:"oomKilled,omitempty"`
	// Error says why a process could not run (then Code is 126 or 127).
	Error string `json:"error,omitempty"`
}

// Conn reads and writes frames. Writes may come from several goroutines; reads from one.
type Conn struct {
	r   *bufio.Reader
	wmu sync.Mutex
	w   *bufio.Writer
	c   io.Closer
	buf []byte
	// deadline, if set, bounds each write (the stream must have SetWriteDeadline): a
	// peer that stops reading fails the conversation instead of holding it up.
	deadline func(time.Time) error
	timeout  time.Duration
}

// SetWriteTimeout bounds each write to d, where the stream takes write deadlines.
func (c *Conn) SetWriteTimeout(d time.Duration) {
	if dl, ok := c.c.(interface{ SetWriteDeadline(time.Time) error }); ok {
		c.deadline, c.timeout = dl.SetWriteDeadline, d
	}
}

// NewConn frames rw.
func NewConn(rw io.ReadWriteCloser) *Conn {
	return &Conn{r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10), c: rw}
}

// Write sends one frame.
func (c *Conn) Write(kind byte, id uint32, p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("frame of %d bytes is too big", len(p))
	}
	var h [9]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], id)
	binary.BigEndian.PutUint32(h[5:], uint32(len(p)))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.deadline != nil {
		c.deadline(time.Now().Add(c.timeout))
	}
	if _, err := c.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(p); err != nil {
		return err
	}
	return c.w.Flush()
}

// WriteJSON sends one frame whose payload is v in JSON.
func (c *Conn) WriteJSON(kind byte, id uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(kind, id, b)
}

// Read reads one frame. The payload is valid until the next Read.
func (c *Conn) Read() (kind byte, id uint32, p []byte, err error) {
	var h [9]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[5:])
	if n > MaxPayload {
		return 0, 0, nil, fmt.Errorf("frame of %d bytes is too big", n)
	}
	if cap(c.buf) < int(n) {
		c.buf = make([]byte, n)
	}
	p = c.buf[:n]
	if _, err := io.ReadFull(c.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return h[0], binary.BigEndian.Uint32(h[1:]), p, nil
}

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.c.Close() }

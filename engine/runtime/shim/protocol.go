//go:build linux

package shim

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/frames"
)

// Config is what the daemon tells a shim, in STATEDIR/shim.json.
type Config struct {
	ID       string       `json:"id"`
	Bundle   string       `json:"bundle"`
	Runc     string       `json:"runc"`
	RuncRoot string       `json:"runcRoot"`
	LogDir   string       `json:"logDir"`
	Logs     logs.Options `json:"logs"`
	Tty      bool         `json:"tty"`
	Stdin    bool         `json:"stdin"`
	// CgroupsPath is the container's cgroup, to learn whether the kernel killed it
	// for lack of memory.
	CgroupsPath string `json:"cgroupsPath"`
	// ConsoleSize is the terminal's size (rows, columns) before the process starts.
	ConsoleSize [2]uint16 `json:"consoleSize"`
	// Socket is the shim's abstract socket (set by Spawn).
	Socket string `json:"socket"`
	// Launcher names the launcher that runs the container instead of runc (see Main),
	// and LauncherConfig is its configuration.
	Launcher       string          `json:"launcher,omitempty"`
	LauncherConfig json.RawMessage `json:"launcherConfig,omitempty"`
}

// Files in a shim's state directory.
const (
	ConfigFile = "shim.json"
	ExitFile   = "exit.json"
	LogFile    = "shim.log"
	PidFile    = "pid"
	// ShimPidFile holds the shim's own pid (a spare shim's command line does not name
	// its container).
	ShimPidFile = "shim.pid"
)

// newSocketName names the abstract socket of a new shim. Each shim has its own name:
// the shim of a container's previous run may still be closing when the next one starts.
func newSocketName() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "@dutchman-shim-" + hex.EncodeToString(b)
}

// request is the one JSON line a connection opens with.
type request struct {
	Op    string `json:"op"` // start, wait, attach, resize, state, shutdown; a launcher's
	Stdin bool   `json:"stdin,omitempty"`
	Rows  uint16 `json:"rows,omitempty"`
	Cols  uint16 `json:"cols,omitempty"`
	// Args are the arguments of a launcher's request.
	Args json.RawMessage `json:"args,omitempty"`
}

// response is the JSON line that answers it.
type response struct {
	Error string `json:"error,omitempty"`
	// Kind names the error's kinds (errdefs.KindOf), which the client gives it again.
	Kind string         `json:"kind,omitempty"`
	Pid  int            `json:"pid,omitempty"`
	Exit *rt.ExitStatus `json:"exit,omitempty"`
	// Result is the result of a launcher's request.
	Result json.RawMessage `json:"result,omitempty"`
}

// Frames of an attach stream (engine/runtime/frames).
const (
	frameStdin      = frames.Stdin
	frameStdout     = frames.Stdout
	frameStderr     = frames.Stderr
	frameExit       = frames.Exit
	frameStdinClose = frames.StdinClose
)

var (
	writeFrame = frames.Write
	readFrame  = frames.Read
)

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func readJSONLine(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

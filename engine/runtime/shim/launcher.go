//go:build linux

package shim

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net"
	"os"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/reaper"
)

// A Launcher runs a container for the shim in place of runc: the vm runtime's boots a
// VM. The shim keeps what is common: the streams, the logs, attach, the exit record.
type Launcher interface {
	// Launch starts the container's process, whose standard streams are stdio (the
	// container's ends of the shim's pipes, or /dev/null with a terminal, which the
	// launcher makes). The files are the shim's: a launcher keeps copies of the ones it
	// needs.
	Launch(stdio [3]*os.File) (*Launched, error)
}

// Launched is a container a Launcher started.
type Launched struct {
	// Pid is the process that stands for the container on the host.
	Pid int
	// Done yields how the container's process ended, once.
	Done <-chan rt.ExitStatus
	// Console is the host's side of the container's terminal, for one with a terminal:
	// the shim reads the output from it and writes the input to it.
	Console *os.File
}

// A Resizer is a Launcher that sets the size of the container's terminal itself.
type Resizer interface {
	Resize(rows, cols uint16) error
}

// A Handler is a Launcher that answers requests of its own on the shim's socket. Handle
// returns false for an op it does not know; otherwise it owns c (the shim closes it
// after) and answers with a response line, as Reply writes it, then whatever the op
// streams.
type Handler interface {
	Handle(op string, args json.RawMessage, c *net.UnixConn, r *bufio.Reader) bool
}

// LauncherEnv is what a launcher is made with.
type LauncherEnv struct {
	// Dir is the shim's state directory.
	Dir    string
	Log    *slog.Logger
	Reaper *reaper.Reaper
	// Config is Config.LauncherConfig.
	Config json.RawMessage
	// Tty, Stdin and ConsoleSize are the container's, as in Config.
	Tty         bool
	Stdin       bool
	ConsoleSize [2]uint16
}

// NewLauncher makes a launcher.
type NewLauncher func(env LauncherEnv) (Launcher, error)

// Reply answers a launcher's request with an error, or with result as its JSON result.
func Reply(c net.Conn, result any, err error) error {
	if err != nil {
		return writeJSONLine(c, response{Error: err.Error(), Kind: errdefs.KindOf(err)})
	}
	var resp response
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return writeJSONLine(c, response{Error: err.Error()})
		}
		resp.Result = b
	}
	return writeJSONLine(c, resp)
}

package runtime

import (
	"context"
	"io"
	"syscall"
	"time"
)

// Config is everything a runtime needs to run a container's main process, whatever
// isolates it. The engine fills it from the container's spec and its image's config.
type Config struct {
	// ID is the container's ID: 64 hex digits.
	ID string
	// Name is the container's name, for logs and labels.
	Name string
	// Rootfs is the directory the process sees as "/" (already mounted).
	Rootfs string
	// Args is the command: entrypoint and cmd merged as Docker merges them.
	Args []string
	// Env holds KEY=VALUE pairs; PATH is set if the image and spec give none.
	Env []string
	// Cwd is the working directory inside the container ("/" if empty).
	Cwd string
	// User is "uid[:gid]" or "name[:group]" as the spec or image gives it, resolved by
	// the runtime against the container's /etc/passwd and /etc/group. "" is root.
	User string
	// Tty gives the process a pseudo-terminal instead of pipes.
	Tty bool
	// ConsoleSize is the terminal's size (rows, columns) when the process starts.
	ConsoleSize [2]uint16
	// OpenStdin keeps the process's standard input open for attach.
	OpenStdin bool
	// Hostname is the container's host name.
	Hostname string
	// Memory limits memory in bytes (0: no limit).
	Memory int64
	// CPUs limits CPU time, in CPUs (0: no limit; 1.5 is one and a half CPUs).
	CPUs float64
	// Mounts are extra mounts on top of the runtime's defaults.
	Mounts []Mount
	// Labels are passed to the runtime's own metadata (OCI annotations).
	Labels map[string]string
	// NetNS is the network namespace the container joins: a path the engine pinned, or
	// "host" for the host's own; "" for a new one with loopback only.
	NetNS string
	// HostsFile and ResolvConf are the files the container sees as /etc/hosts and
	// /etc/resolv.conf (the engine keeps them current); "" for the runtime's own.
	HostsFile, ResolvConf string
	// Image is the digest of the container's image, and ImageView makes a read-only
	// directory with the image's files, for a runtime that keeps its own copy of them
	// (the vm runtime's block-device root). Rootfs stays what the container runs on
	// otherwise.
	Image     string
	ImageView func(context.Context) (string, error) `json:"-"`
	// Warn, if set, is told what the runtime wants the container's owner to know of a
	// run that is not an error (a VM under TCG because KVM cannot run it here).
	Warn func(message string) `json:"-"`
}

// Mount is a filesystem mounted into a container.
type Mount struct {
	// Destination is the path inside the container.
	Destination string
	// Type is "bind", "tmpfs", ...
	Type string
	// Source is the host path for binds.
	Source string
	// Options are mount options ("ro", "rbind", "size=64m", ...).
	Options []string
}

// ExecConfig describes a process started inside a running container.
type ExecConfig struct {
	Args []string
	Env  []string
	Cwd  string
	User string
	Tty  bool
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code; for a process killed by a signal, 128 + the signal number,
	// as shells and Docker report it.
	Code int `json:"code"`
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal `json:"signal,omitempty"`
	// OOMKilled tells that the kernel killed it for exceeding its memory limit.
	OOMKilled bool      `json:"oomKilled,omitempty"`
	At        time.Time `json:"at"`
	// Error says what went wrong when the status is not the process's own (its monitor
	// died, the machine restarted).
	Error string `json:"error,omitempty"`
}

// Stats is a snapshot of a container's resource use.
type Stats struct {
	CPUNanos    uint64    `json:"cpuNanos"`    // CPU time used, in nanoseconds
	MemoryBytes uint64    `json:"memoryBytes"` // memory in use
	MemoryLimit uint64    `json:"memoryLimit"` // 0: none
	Pids        uint64    `json:"pids"`
	At          time.Time `json:"at"`
}

// Flusher is an output stream that buffers: a runtime flushes it when it has no more
// output at hand.
type Flusher interface {
	Flush() error
}

// Streams are the standard streams of a process for attach and exec. With a terminal,
// Stderr is unused: the terminal carries both. Stdout and Stderr may be Flushers.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Attached, if set, is called once the streams are connected, before any output
	// flows: the engine starts a process only then, so that none of it is missed.
	Attached func()
}

// Runtime creates and finds tasks: a container's main process and its isolation.
type Runtime interface {
	// Name is the runtime's name in specs ("oci", "vm").
	Name() string
	// Create prepares the container (isolation, monitor, standard streams, logging to
	// logDir) without starting its process.
	Create(ctx context.Context, cfg *Config, logDir string) (Task, error)
	// Load finds a task an earlier run of the daemon created, to reattach to it after a
	// daemon restart. A task whose monitor has gone reports its exit through Wait.
	Load(ctx context.Context, id, logDir string) (Task, error)
	// Delete removes what Create made for id, after the task has exited. Deleting what
	// is already gone is not an error.
	Delete(ctx context.Context, id string) error
	// Describe is the runtime's own description of the container cfg describes, as
	// JSON (for runc, the OCI config.json): the one it was given if it runs, else the
	// one it would be given now.
	Describe(ctx context.Context, cfg *Config) ([]byte, error)
}

// Task is a created container's main process.
type Task interface {
	// Start starts the process and returns its pid (in the host's pid namespace).
	Start(ctx context.Context) (int, error)
	// Pid is the process's pid, or 0 before Start.
	Pid() int
	// Kill sends sig to the process (to every process of the container with all).
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	// Pause freezes every process of the container; Resume thaws them.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Wait returns a channel that yields the exit status once and is then closed.
	Wait() <-chan ExitStatus
	// Stats reports resource use.
	Stats(ctx context.Context) (*Stats, error)
	// Pids lists the container's processes, as host pids.
	Pids(ctx context.Context) ([]int, error)
	// Attach connects streams to the process: its output as it comes, and, if the
	// container keeps stdin open, Stdin to its input. It returns when the process exits
	// (with its exit status), the output streams fail, or ctx ends.
	Attach(ctx context.Context, s Streams) (*ExitStatus, error)
	// Resize sets the size of the process's terminal.
	Resize(ctx context.Context, rows, cols uint16) error
	// Exec runs another process in the container and returns its exit status.
	Exec(ctx context.Context, cfg *ExecConfig, s Streams, resize <-chan [2]uint16) (ExitStatus, error)
	// Close releases the engine's connection to the task; the task keeps running.
	Close() error
}

// Package shim is the monitor each oci container runs under: `dutchman shim STATEDIR`, the
// dutchman binary re-executed, like containerd-shim or conmon.
//
// The shim starts the container with runc (create, then start when asked), owns its
// standard streams, writes its output to the log store (engine/logs), reaps its process
// as a child subreaper, and records how it exited in STATEDIR/exit.json. It does not
// depend on the daemon: when the daemon dies, containers keep running and their output
// keeps being logged; a new daemon reconnects to the shim's socket.
//
// The daemon talks to a shim over a unix socket in the abstract namespace (no path
// length limit, nothing to clean up), which only processes of the shim's own user may
// use. Each connection carries one request, a JSON line, answered by a JSON line;
// attach then carries framed streams (protocol.go).
package shim

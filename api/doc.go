// Package api is the daemon's HTTP API: JSON over a unix socket, under versioned paths
// (/v1/...). It holds the server, a client for the CLI, and the wire types; it is a door
// to the engine like the tree in fs/, and does nothing the engine does not.
//
// Errors travel as {"message": ..., "code": ...} with a status code from one table
// (errors.go); long operations (pull, push, load) answer with a stream of JSON lines,
// each a progress report, ending in a line with the result or an error. docs/api.md
// documents every endpoint.
package api

// Version is the API version in every path.
const Version = "v1"

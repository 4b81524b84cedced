// Package engine is the one place that owns the daemon's state: it opens the data root
// (taking its lock), the metadata database and the image store, and will own containers,
// their state machine, events and logs. The doors (the HTTP API in api/, the tree in fs/)
// call the engine and never change state themselves.
package engine

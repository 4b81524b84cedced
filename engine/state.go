package engine

import (
	"fmt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// State is where a container is in its life.
type State string

// The states of architecture.md. An exited container is "stopped"; its exit code is in
// its record.
const (
	Created    State = "created"
	Starting   State = "starting"
	Running    State = "running"
	Stopping   State = "stopping"
	Stopped    State = "stopped"
	Restarting State = "restarting"
	Paused     State = "paused"
	Removing   State = "removing"
	Removed    State = "removed"
)

// transitions is the state machine: from each state, the states it may move to. Every
// change of state goes through (*Engine).transition, which checks this table, persists
// the change and then announces it.
var transitions = map[State][]State{
	Created:    {Starting, Removing},
	Starting:   {Running, Stopped, Removing},
	Running:    {Stopping, Stopped, Paused, Restarting, Removing},
	Stopping:   {Stopped, Restarting},
	Stopped:    {Starting, Restarting, Removing},
	Restarting: {Starting, Stopped, Removing},
	Paused:     {Running, Stopping, Stopped, Removing},
	Removing:   {Removed, Stopped},
	Removed:    {},
}

// Live tells whether a container in state s may have a process: its network and
// volumes are in use.
func (s State) Live() bool {
	switch s {
	case Starting, Running, Paused, Stopping:
		return true
	}
	return false
}

// canMove tells whether a container may go from one state to another.
func canMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// StateError is an operation the container's state forbids. It is a conflict: the tree
// answers EBUSY, the API 409.
type StateError struct {
	Name  string
	State State
	Verb  string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s container %s: it is %s", e.Verb, e.Name, e.State)
}

// Is makes errors.Is(err, errdefs.ErrConflict) hold.
func (e *StateError) Is(target error) bool { return target == errdefs.ErrConflict }

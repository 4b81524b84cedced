//go:build !linux

package engine

import (
	"errors"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

var errTreeBinds = errors.New("binds of the tree's directories need Linux (openat2)")

func (e *Engine) checkTreeBind(m volumes.Mount) error { return errTreeBinds }

func (e *Engine) stageBinds(c *Container, mounts []rt.Mount) (func(), error) {
	for _, m := range c.Mounts {
		if m.InTree {
			return nil, errTreeBinds
		}
	}
	return func() {}, nil
}

func (e *Engine) unstageAll() {}

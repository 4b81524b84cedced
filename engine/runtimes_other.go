//go:build !linux

package engine

import (
	"context"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

// newRuntimes makes the runtimes this system has: elsewhere than Linux, none yet (the
// vm runtime, with another monitor than QEMU's microvm, will be the one there).
func (e *Engine) newRuntimes() (map[string]rt.Runtime, error) {
	return map[string]rt.Runtime{}, nil
}

func (e *Engine) vmRunsKVM(context.Context) bool { return false }

func (e *Engine) probeVM() {}

func (e *Engine) vmAccel() *vm.AccelInfo { return nil }

//go:build !linux

package engine

import rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"

// newRuntimes makes the runtimes this system has: elsewhere than Linux, none yet (the
// vm runtime, with another monitor than QEMU's microvm, will be the one there).
func (e *Engine) newRuntimes() (map[string]rt.Runtime, error) {
	return map[string]rt.Runtime{}, nil
}

func kvm() bool { return false }

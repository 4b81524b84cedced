package engine

import (
	"context"
	"errors"
	"os"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Kernels is the vm runtime's kernel cache: the guest kernels vm containers boot.
func (e *Engine) Kernels() (*vm.Kernels, error) {
	if e.kernels == nil {
		return nil, errdefs.Unavailable(errors.New("the vm runtime is not available on this system"))
	}
	return e.kernels, nil
}

// PushKernel makes a kernel artifact from a Debian kernel package (debian:PACKAGE or a
// .deb file) and pushes it to ref, with the engine's registry settings. It returns the
// artifact's digest.
func (e *Engine) PushKernel(ctx context.Context, source, ref string) (string, error) {
	if _, err := e.Kernels(); err != nil {
		return "", err
	}
	return vm.PushKernel(ctx, e.images, source, ref)
}

// self is the dutchman binary: the configured one, or this process's.
func (e *Engine) self() string {
	if e.cfg.Self != "" {
		return e.cfg.Self
	}
	self, _ := os.Executable()
	return self
}

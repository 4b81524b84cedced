package engine

import (
	"context"
	"fmt"
	"path/filepath"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/oci"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

// newRuntimes makes the runtimes this system has: on Linux, oci and vm.
func (e *Engine) newRuntimes() (map[string]rt.Runtime, error) {
	cfg := e.cfg
	r, err := oci.New(filepath.Join(cfg.DataRoot, "runtime", "oci"),
		oci.WithRunc(cfg.Runc), oci.WithShim(cfg.Self), oci.WithLogs(cfg.Logs), oci.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("oci runtime: %w", err)
	}
	agent := cfg.VMAgent
	if agent == "" {
		agent = filepath.Join(filepath.Dir(e.self()), "dutchman-agent")
	}
	kernels, err := vm.NewKernels(filepath.Join(cfg.DataRoot, "kernels"), agent, cfg.VMKernel, e.images, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("vm runtime: %w", err)
	}
	v, err := vm.New(filepath.Join(cfg.DataRoot, "runtime", "vm"), kernels,
		vm.WithShim(cfg.Self), vm.WithLogs(cfg.Logs), vm.WithLogger(cfg.Logger), vm.WithRootfs(cfg.VMRootfs),
		vm.WithAccel(cfg.VMAccel))
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("vm runtime: %w", err)
	}
	e.kernels = kernels
	return map[string]rt.Runtime{r.Name(): r, v.Name(): v}, nil
}

// vmRunsKVM tells whether the vm runtime's guests run under KVM here, which makes it the
// choice of "auto".
func (e *Engine) vmRunsKVM(ctx context.Context) bool {
	v, ok := e.runtimes["vm"].(*vm.Runtime)
	return ok && v.RunsKVM(ctx)
}

// probeVM has the vm runtime probe KVM now, if it has a kernel and no verdict for it, so
// that the first vm or auto container does not wait for the probe. It does not delay
// the daemon's start.
func (e *Engine) probeVM() {
	if v, ok := e.runtimes["vm"].(*vm.Runtime); ok {
		v.ProbeSoon()
	}
}

// vmAccel is what the vm runtime says of its accelerator, nil without it.
func (e *Engine) vmAccel() *vm.AccelInfo {
	if v, ok := e.runtimes["vm"].(*vm.Runtime); ok {
		return v.AccelInfo()
	}
	return nil
}

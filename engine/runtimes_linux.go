package engine

import (
	"fmt"
	"path/filepath"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/oci"
)

// newRuntimes makes the runtimes this system has: on Linux, oci.
func (e *Engine) newRuntimes() (map[string]rt.Runtime, error) {
	cfg := e.cfg
	r, err := oci.New(filepath.Join(cfg.DataRoot, "runtime", "oci"),
		oci.WithRunc(cfg.Runc), oci.WithShim(cfg.Self), oci.WithLogs(cfg.Logs), oci.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("oci runtime: %w", err)
	}
	return map[string]rt.Runtime{r.Name(): r}, nil
}

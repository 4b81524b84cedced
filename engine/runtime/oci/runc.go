//go:build linux

package oci

import (
	"bytes"
	"context"
	"os/exec"
	"time"
)

// runcCmd runs runc with the runtime's root and returns what it printed.
func (r *Runtime) runcCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, r.runc, append([]string{"--root", r.runcRoot()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func nowUTC() time.Time { return time.Now().UTC() }

//go:build !linux

package build

import (
	"os"
	"os/exec"
)

func setProcAttr(cmd *exec.Cmd) {}

func terminate(p *os.Process) { p.Kill() }

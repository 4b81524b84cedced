//go:build !linux

package build

import (
	"fmt"
	"os"
	"os/exec"
)

func command(_, _, _ string, argv ...string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }

// ExecMain: buildkitd runs on Linux only.
func ExecMain(argv []string) int {
	fmt.Fprintln(os.Stderr, "buildkitd-exec: builds run on Linux only")
	return 1
}

func terminate(p *os.Process) { p.Kill() }

package build

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr runs buildkitd in a mount namespace of its own, so the mounts of its
// snapshots and RUN steps go when it goes (Go makes the new namespace's mounts private
// before the exec), and ends it with the daemon.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Pdeathsig:    syscall.SIGTERM,
		Setpgid:      true,
	}
}

func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }

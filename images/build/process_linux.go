package build

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// command runs buildkitd through `dutchman buildkitd-exec` in a mount namespace of its
// own, so the mounts of its snapshots and RUN steps go when it goes (Go makes the new
// namespace's mounts private before the exec), and ends it with the daemon.
func command(self string, argv ...string) *exec.Cmd {
	cmd := exec.Command(self, append([]string{"buildkitd-exec"}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Pdeathsig:    syscall.SIGTERM,
		Setpgid:      true,
	}
	return cmd
}

// ExecMain is `dutchman buildkitd-exec BUILDKITD ARGS...`: in buildkitd's new mount
// namespace, it lets go of the copies of FUSE mounts (the daemon's tree, which the
// daemon could not unmount while a copy lives), then becomes buildkitd.
func ExecMain(argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "buildkitd-exec: no program")
		return 2
	}
	if err := fsutil.DetachFUSE(); err != nil {
		fmt.Fprintln(os.Stderr, "buildkitd-exec:", err)
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "buildkitd-exec: exec", argv[0]+":", err)
	return 1
}

func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }

package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// command runs buildkitd through `dutchman buildkitd-exec` in a mount namespace of its
// own, so the mounts of its snapshots and RUN steps go when it goes (Go makes the new
// namespace's mounts private before the exec), and ends it with the daemon. The mounts
// below dataRoot but outside keep are let go of in that namespace.
func command(self, dataRoot, keep string, argv ...string) *exec.Cmd {
	cmd := exec.Command(self, append([]string{"buildkitd-exec", dataRoot, keep}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Pdeathsig:    syscall.SIGTERM,
		Setpgid:      true,
	}
	return cmd
}

// ExecMain is `dutchman buildkitd-exec DATAROOT KEEP BUILDKITD ARGS...`: in
// buildkitd's new mount namespace, it lets go of the copies of the daemon's mounts: FUSE
// mounts (the daemon's tree, which the daemon could not unmount while a copy lives)
// and what is mounted below DATAROOT but outside KEEP (containers' root filesystems,
// volumes' disks, which a copy would keep busy after the daemon unmounts them); then
// it becomes buildkitd.
func ExecMain(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "buildkitd-exec: want DATAROOT KEEP BUILDKITD [ARG...]")
		return 2
	}
	// Mount points are named by their real paths.
	real := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return filepath.Clean(p)
	}
	dataRoot, keep, argv := real(args[0]), real(args[1]), args[2:]
	if err := fsutil.DetachFUSE(); err != nil {
		fmt.Fprintln(os.Stderr, "buildkitd-exec:", err)
	}
	if mps, err := fsutil.MountsUnder(dataRoot); err == nil {
		for _, mp := range mps {
			if mp == dataRoot || mp == keep || strings.HasPrefix(mp, keep+"/") || strings.HasPrefix(keep, mp+"/") {
				continue
			}
			if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && err != unix.EINVAL {
				fmt.Fprintf(os.Stderr, "buildkitd-exec: detach %s: %v\n", mp, err)
			}
		}
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "buildkitd-exec: exec", argv[0]+":", err)
	return 1
}

func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }

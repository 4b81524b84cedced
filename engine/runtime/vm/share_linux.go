package vm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// shareRequest is what `dutchman vm-share` is given: the share to assemble in its own
// mount namespace, and the virtiofsd command line it then becomes.
type shareRequest struct {
	Dir   string   `json:"dir"`
	Share Share    `json:"share"`
	Argv  []string `json:"argv"`
}

// ShareMain is `dutchman vm-share REQUEST`: run in a mount namespace of its own (the
// launcher starts it so), it lets go of the namespace's FUSE mounts (the daemon's tree),
// binds the container's root filesystem and its bind mounts'
// sources into the share directory, then executes virtiofsd on it. The binds live and
// die with that namespace: nothing is left on the host whatever happens to the VM.
func ShareMain(arg string) int {
	var req shareRequest
	if err := json.Unmarshal([]byte(arg), &req); err != nil {
		fmt.Fprintln(os.Stderr, "vm-share:", err)
		return 2
	}
	if err := fsutil.DetachFUSE(); err != nil {
		fmt.Fprintln(os.Stderr, "vm-share:", err)
	}
	if err := assembleShare(req.Dir, req.Share); err != nil {
		fmt.Fprintln(os.Stderr, "vm-share:", err)
		return 1
	}
	err := syscall.Exec(req.Argv[0], req.Argv, os.Environ())
	fmt.Fprintln(os.Stderr, "vm-share: exec virtiofsd:", err)
	return 1
}

func assembleShare(dir string, s Share) error {
	if s.Rootfs != "" {
		if err := bindInto(s.Rootfs, filepath.Join(dir, "root"), false); err != nil {
			return fmt.Errorf("share the root filesystem: %w", err)
		}
	}
	for _, b := range s.Binds {
		if b.Name == "" || b.Name != filepath.Base(b.Name) || b.Name == "root" || b.Name == "." || b.Name == ".." {
			return fmt.Errorf("bad share name %q", b.Name)
		}
		if err := bindInto(b.Source, filepath.Join(dir, b.Name), b.ReadOnly); err != nil {
			return fmt.Errorf("share %s: %w", b.Source, err)
		}
	}
	return nil
}

// bindInto binds source (a directory or a file) on target, made for it.
func bindInto(source, target string, readOnly bool) error {
	st, err := os.Stat(source)
	if err != nil {
		return err
	}
	if st.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if readOnly {
		// Read-only all the way down: the mounts below the source too.
		return unix.MountSetattr(-1, target, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	}
	return nil
}

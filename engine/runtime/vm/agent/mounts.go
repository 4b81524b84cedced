//go:build linux

package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

// mountFlags are the mount options that are flags; the others are the filesystem's data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"async":       {true, unix.MS_SYNCHRONOUS},
	"dirsync":     {false, unix.MS_DIRSYNC},
	"noatime":     {false, unix.MS_NOATIME},
	"atime":       {true, unix.MS_NOATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"diratime":    {true, unix.MS_NODIRATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"norelatime":  {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"bind":        {false, unix.MS_BIND},
	"rbind":       {false, unix.MS_BIND | unix.MS_REC},
}

// propagation options are left to the guest's defaults: nothing in the guest shares
// mounts with the container.
var ignoredOptions = map[string]bool{
	"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true,
	"rslave": true, "unbindable": true, "runbindable": true,
}

// parseOptions splits mount options into flags and data.
func parseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if ignoredOptions[o] {
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// mountAll makes mounts inside root, in order. Destinations are resolved inside root:
// a symbolic link in the container's files cannot lead a mount out of it.
func mountAll(root string, mounts []proto.Mount) error {
	for _, m := range mounts {
		if err := mountOne(root, m); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
	}
	return nil
}

func mountOne(root string, m proto.Mount) error {
	dest, err := securejoin.SecureJoin(root, m.Destination)
	if err != nil {
		return err
	}
	flags, data := parseOptions(m.Options)
	typ, source := m.Type, m.Source
	switch typ {
	case "bind":
		st, err := os.Stat(source)
		if err != nil {
			return err
		}
		if err := makeMountpoint(dest, st.IsDir()); err != nil {
			return err
		}
		if flags&unix.MS_BIND == 0 {
			flags |= unix.MS_BIND | unix.MS_REC
		}
		if err := unix.Mount(source, dest, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return err
		}
		// A bind takes its other flags only from a remount.
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
			return unix.Mount("", dest, "", unix.MS_REMOUNT|unix.MS_BIND|rest, "")
		}
		return nil
	case "cgroup":
		// The guest has its own hierarchy, the unified one.
		typ, source, data = "cgroup2", "cgroup2", ""
	}
	if err := makeMountpoint(dest, true); err != nil {
		return err
	}
	if err := unix.Mount(source, dest, typ, flags, data); err != nil {
		return err
	}
	switch {
	case m.Destination == "/dev" && typ == "tmpfs":
		return populateDev(dest)
	case typ == "devpts":
		ptmx := filepath.Join(filepath.Dir(dest), "ptmx")
		if filepath.Base(dest) == "pts" {
			os.Remove(ptmx)
			os.Symlink("pts/ptmx", ptmx)
		}
	}
	return nil
}

// mountRoot makes the mounts that assemble the container's root, at the guest's own
// paths, with "serial:NAME" sources found among the virtio block devices.
func mountRoot(mounts []proto.Mount) error {
	for _, m := range mounts {
		if name, ok := strings.CutPrefix(m.Source, "serial:"); ok {
			dev, err := deviceBySerial(name)
			if err != nil {
				return err
			}
			m.Source = dev
		}
		if err := mountOne("/", m); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
	}
	return nil
}

// deviceBySerial finds the block device whose serial is name (/sys/block/*/serial).
func deviceBySerial(name string) (string, error) {
	ents, _ := filepath.Glob("/sys/block/*/serial")
	for _, e := range ents {
		if b, err := os.ReadFile(e); err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(e)), nil
		}
	}
	return "", fmt.Errorf("no block device has the serial %q", name)
}

// makeMountpoint makes the directory or empty file a mount goes on, as runc does.
func makeMountpoint(dest string, dir bool) error {
	if dir {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(dest); err == nil {
		return nil
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// populateDev makes the device nodes and links of a container's /dev, as runc does.
func populateDev(dev string) error {
	nodes := []struct {
		name         string
		major, minor uint32
	}{
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "core": "/proc/kcore",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

package volumes

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// The types of mount.
const (
	TypeBind   = "bind"   // a host path
	TypeVolume = "volume" // a named or anonymous volume
	TypeTmpfs  = "tmpfs"  // a fresh tmpfs
)

// Mount is one mount of a container, as Compose's long syntax says it.
type Mount struct {
	Type     string `json:"type"`             // TypeBind, TypeVolume or TypeTmpfs
	Source   string `json:"source,omitempty"` // host path (bind), volume name ("" = anonymous), unused for tmpfs
	Target   string `json:"target"`           // absolute path in the container
	ReadOnly bool   `json:"read_only,omitempty"`
	// CreateHostPath creates a missing bind source (compose bind.create_host_path; `-v`
	// does so, as Docker does).
	CreateHostPath bool   `json:"create_host_path,omitempty"`
	NoCopy         bool   `json:"nocopy,omitempty"`     // volume: do not copy the image's content in
	TmpfsSize      int64  `json:"tmpfs_size,omitempty"` // bytes, 0 = default
	TmpfsMode      uint32 `json:"tmpfs_mode,omitempty"` // 0 = default 1777
	// InTree marks a bind whose source is a directory of the tree (a spec file's
	// relative path): Source is then a path in the tree's backing directory, absolute
	// there, and is resolved inside it whatever links its owner puts in the way.
	InTree bool `json:"in_tree,omitempty"`
	// Anonymous marks, in a container's resolved mounts, a volume made for that
	// container (asked without a name, or an image's VOLUME path): rm -v and --rm
	// remove only those, never a volume the container named.
	Anonymous bool `json:"anonymous,omitempty"`
}

// checkSource checks the source of a mount of each type.
var checkSource = map[string]func(source string) error{
	TypeBind: func(source string) error {
		if !path.IsAbs(source) {
			return fmt.Errorf("bind source %q must be an absolute host path", source)
		}
		return nil
	},
	TypeVolume: func(source string) error {
		if source == "" {
			return nil
		}
		return ValidName(source)
	},
	TypeTmpfs: func(source string) error {
		if source != "" {
			return fmt.Errorf("a tmpfs mount takes no source (got %q)", source)
		}
		return nil
	},
}

// Validate returns an errdefs.Invalid error unless m is a mount the engine can make: a
// known type, a clean absolute target that hides neither the root nor /proc or /sys, a
// source fit for the type, and no option of another type.
func (m Mount) Validate() error {
	check, ok := checkSource[m.Type]
	if !ok {
		return errdefs.Invalid(fmt.Errorf("unknown mount type %q (want %s, %s or %s)", m.Type, TypeBind, TypeVolume, TypeTmpfs))
	}
	if err := CheckTarget(m.Target); err != nil {
		return errdefs.Invalid(err)
	}
	if err := check(m.Source); err != nil {
		return errdefs.Invalid(err)
	}
	for _, o := range m.typedOptions() {
		if o.set && o.typ != m.Type {
			return errdefs.Invalid(fmt.Errorf("%s applies to %s mounts, not %s", o.name, o.typ, m.Type))
		}
	}
	if m.TmpfsSize < 0 {
		return errdefs.Invalid(fmt.Errorf("negative tmpfs size %d", m.TmpfsSize))
	}
	if m.TmpfsMode > 0o7777 {
		return errdefs.Invalid(fmt.Errorf("tmpfs mode %o: more than permission bits", m.TmpfsMode))
	}
	return nil
}

// typedOption is a field of Mount that only one type of mount uses.
type typedOption struct {
	name string // as Compose's long syntax names it
	typ  string
	set  bool
}

func (m Mount) typedOptions() []typedOption {
	return []typedOption{
		{"create_host_path", TypeBind, m.CreateHostPath},
		{"in_tree", TypeBind, m.InTree},
		{"nocopy", TypeVolume, m.NoCopy},
		{"tmpfs size", TypeTmpfs, m.TmpfsSize != 0},
		{"tmpfs mode", TypeTmpfs, m.TmpfsMode != 0},
	}
}

// kernelDirs are the mount targets that would hide the kernel's filesystems, which the
// runtime mounts and the container's processes (ps, mount, free) read.
var kernelDirs = []string{"/proc", "/sys"}

// CheckTarget returns an error unless target is a clean absolute path where a mount may
// go: not / (it would hide the container's root filesystem), nor /proc or /sys and what
// is below them.
func CheckTarget(target string) error {
	switch {
	case target == "":
		return errors.New("mount target is empty")
	case !path.IsAbs(target):
		return fmt.Errorf("mount target %q must be an absolute path", target)
	case path.Clean(target) != target:
		return fmt.Errorf("mount target %q is not clean (%q)", target, path.Clean(target))
	case target == "/":
		return errors.New("mount target /: mounting over / hides the container's root filesystem")
	}
	for _, dir := range kernelDirs {
		if target == dir || strings.HasPrefix(target, dir+"/") {
			return fmt.Errorf("mount target %s: mounting over %s hides the kernel's view", target, dir)
		}
	}
	return nil
}

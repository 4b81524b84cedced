package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// Volumes: named volumes live in the volumes store; the engine knows which containers
// use them, makes the ones a container asks for, and gives the runtime the mounts.

// VolumeInfo is a volume and the containers that use it.
type VolumeInfo struct {
	volumes.Volume
	// UsedBy names the containers whose mounts name the volume, in any state.
	UsedBy []string `json:"usedBy,omitempty"`
}

// CreateVolume makes volume name (a random name if "").
func (e *Engine) CreateVolume(ctx context.Context, name string, opts volumes.CreateOptions) (*volumes.Volume, error) {
	if name == "" {
		opts.Anonymous = true
	}
	v, created, err := e.volumes.Create(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	if created {
		e.publishVolume(v.Name, "create")
	}
	return v, nil
}

// Volume returns volume name with its users.
func (e *Engine) Volume(name string) (*VolumeInfo, error) {
	v, err := e.volumes.Get(name)
	if err != nil {
		return nil, err
	}
	return &VolumeInfo{Volume: *v, UsedBy: e.volumeUsers()[name]}, nil
}

// VolumeEmpty tells whether volume name holds no file.
func (e *Engine) VolumeEmpty(name string) (bool, error) { return e.volumes.Empty(name) }

// Volumes lists the volumes with their users.
func (e *Engine) Volumes() ([]*VolumeInfo, error) {
	vs, err := e.volumes.List()
	if err != nil {
		return nil, err
	}
	users := e.volumeUsers()
	out := make([]*VolumeInfo, len(vs))
	for i, v := range vs {
		out[i] = &VolumeInfo{Volume: *v, UsedBy: users[v.Name]}
	}
	return out, nil
}

// RemoveVolume removes volume name, refused while a container uses it (whatever its
// state, as in Docker): the message names them.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	e.volMu.Lock()
	defer e.volMu.Unlock()
	if e.volHolds[name] > 0 {
		return errdefs.Conflict(fmt.Errorf("volume %s is in use by a container being created", name))
	}
	if users := e.volumeUsers()[name]; len(users) > 0 {
		return errdefs.Conflict(fmt.Errorf("volume %s is in use by container %s: remove %s first",
			name, strings.Join(users, ", "), plural(len(users), "it", "them")))
	}
	if err := e.volumes.Remove(ctx, name); err != nil {
		return err
	}
	e.publishVolume(name, "destroy")
	return nil
}

// PruneVolumes removes the volumes no container uses: anonymous ones only, unless all.
// It returns the names removed.
func (e *Engine) PruneVolumes(ctx context.Context, all bool) ([]string, error) {
	vs, err := e.volumes.List()
	if err != nil {
		return nil, err
	}
	users := e.volumeUsers()
	var removed []string
	var errs []error
	for _, v := range vs {
		if len(users[v.Name]) > 0 || (!v.Anonymous && !all) {
			continue
		}
		if err := e.RemoveVolume(ctx, v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, v.Name)
	}
	return removed, errors.Join(errs...)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// volumeUsers maps volume names to the names of the containers that mount them.
func (e *Engine) volumeUsers() map[string][]string {
	users := map[string][]string{}
	for _, c := range e.List() {
		for _, m := range c.Mounts {
			if m.Type == "volume" && !slices.Contains(users[m.Source], c.Name) {
				users[m.Source] = append(users[m.Source], c.Name)
			}
		}
	}
	for _, u := range users {
		sort.Strings(u)
	}
	return users
}

func (e *Engine) publishVolume(name, action string) {
	e.events.publish(Event{Type: "volume", Action: action, ID: name, Name: name})
}

// resolveMounts turns a spec's mounts into a container's: bind sources checked (or
// made), volumes made if missing (a random name for an anonymous one), and an
// anonymous volume for each of the image's VOLUME paths no mount covers. It returns the
// volumes it made, for undo, and holds every volume it names until release is called
// (once the container's record exists, or its create failed): a volume about to be
// mounted is in use, and cannot be removed meanwhile.
func (e *Engine) resolveMounts(ctx context.Context, spec *Spec, img *images.Image, inherit map[string]string) (mounts []volumes.Mount, made []string, release func(), err error) {
	var held []string
	release = func() {
		e.volMu.Lock()
		defer e.volMu.Unlock()
		for _, n := range held {
			if e.volHolds[n]--; e.volHolds[n] <= 0 {
				delete(e.volHolds, n)
			}
		}
		held = nil
	}
	undo := func() {
		e.undoVolumes(ctx, made)
		release()
	}
	hold := func(name string) {
		e.volHolds[name]++
		held = append(held, name)
	}
	want := slices.Clone(spec.Mounts)
	if img.Config != nil {
		var paths []string
		for p := range img.Config.Config.Volumes {
			if err := (volumes.Mount{Type: "volume", Target: path.Clean(p)}).Validate(); err != nil || !path.IsAbs(p) {
				e.log.Warn("an image's VOLUME path that cannot be mounted is left alone", "image", img.ID, "path", p)
				continue
			}
			paths = append(paths, path.Clean(p))
		}
		sort.Strings(paths)
		for _, p := range paths {
			if !slices.ContainsFunc(want, func(m volumes.Mount) bool { return path.Clean(m.Target) == p }) {
				want = append(want, volumes.Mount{Type: "volume", Target: p})
			}
		}
	}
	for _, m := range want {
		switch m.Type {
		case "bind":
			if m.InTree {
				if err := e.checkTreeBind(m); err != nil {
					undo()
					return nil, nil, nil, err
				}
				break
			}
			if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
				if !m.CreateHostPath {
					undo()
					return nil, nil, nil, errdefs.Invalid(fmt.Errorf("bind source path does not exist: %s", m.Source))
				}
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					undo()
					return nil, nil, nil, fmt.Errorf("create bind source %s: %w", m.Source, err)
				}
			} else if err != nil {
				undo()
				return nil, nil, nil, fmt.Errorf("bind source %s: %w", m.Source, err)
			}
		case "volume":
			if m.Source == "" {
				m.Anonymous = true
			}
			e.volMu.Lock()
			if name := inherit[path.Clean(m.Target)]; m.Anonymous && name != "" {
				if _, err := e.volumes.Get(name); err == nil {
					m.Source = name
					hold(name)
					e.volMu.Unlock()
					mounts = append(mounts, m)
					continue
				}
			}
			v, created, err := e.volumes.Create(ctx, m.Source, volumes.CreateOptions{Anonymous: m.Anonymous})
			if err == nil && spec.Unprivileged && len(v.Options) > 0 {
				err = errdefs.Invalid(fmt.Errorf("volume %s mounts a filesystem root chose (driver options: a host directory, a disk): a spec file in the tree of a user other than root may not use it", v.Name))
			} else if err == nil {
				hold(v.Name)
			}
			e.volMu.Unlock()
			if err != nil {
				undo()
				return nil, nil, nil, err
			}
			m.Source = v.Name
			if created {
				made = append(made, v.Name)
			}
		}
		mounts = append(mounts, m)
	}
	return mounts, made, release, nil
}

// undoVolumes removes the volumes a failed create made, unless another create in flight
// holds them too, or a container uses them.
func (e *Engine) undoVolumes(ctx context.Context, made []string) {
	ctx = context.WithoutCancel(ctx)
	e.volMu.Lock()
	defer e.volMu.Unlock()
	users := e.volumeUsers()
	for _, n := range made {
		if e.volHolds[n] <= 1 && len(users[n]) == 0 {
			e.volumes.Remove(ctx, n)
		}
	}
}

// checkMountTargets refuses mounts whose targets lead, through symbolic links in the
// image's root filesystem at rootfs, where a mount may not go (over /proc or /sys, or
// over the root). runc keeps a target inside the root filesystem, but would mount over
// what it leads to.
func checkMountTargets(rootfs string, mounts []volumes.Mount) error {
	for _, m := range mounts {
		p, err := securejoin.SecureJoin(rootfs, m.Target)
		if err != nil {
			return err
		}
		to := "/" + strings.TrimPrefix(strings.TrimPrefix(p, rootfs), "/")
		if to == m.Target {
			continue
		}
		if err := volumes.CheckTarget(to); err != nil {
			return errdefs.Invalid(fmt.Errorf("mount target %s leads to %s through a symbolic link in the image: %w", m.Target, to, err))
		}
	}
	return nil
}

// copyUp copies what the image has at each volume mount's target into the volume, as
// Docker does when a volume is new (empty) and the mount does not say nocopy. A volume
// another container uses is left alone: the copy runs as root, and a process of that
// container could put a symbolic link in the copy's way.
func (e *Engine) copyUp(ctx context.Context, rootfs string, mounts []volumes.Mount) error {
	users := e.volumeUsers()
	e.volMu.Lock()
	holds := maps.Clone(e.volHolds)
	e.volMu.Unlock()
	for _, m := range mounts {
		// Held once by this create; more is another create in flight.
		if m.Type != "volume" || m.NoCopy || len(users[m.Source]) > 0 || holds[m.Source] > 1 {
			continue
		}
		// A volume the local driver mounts (a tmpfs, a device) is not mounted yet: a
		// copy would land in the directory below it.
		if v, err := e.volumes.Get(m.Source); err != nil || len(v.Options) > 0 {
			continue
		}
		empty, err := e.volumes.Empty(m.Source)
		if err != nil {
			return err
		}
		if !empty {
			continue
		}
		src, err := securejoin.SecureJoin(rootfs, m.Target)
		if err != nil {
			return err
		}
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			continue
		}
		v, err := e.volumes.Get(m.Source)
		if err != nil {
			return err
		}
		// cp -a keeps owners, modes, links, times and xattrs, as Docker's copy does. A
		// copy cut short is undone: an empty volume is copied into on its next use.
		if out, err := exec.CommandContext(ctx, "cp", "-a", "--", src+"/.", v.Mountpoint).CombinedOutput(); err != nil {
			emptyDir(v.Mountpoint)
			return fmt.Errorf("copy %s of the image into volume %s: %s", m.Target, m.Source, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// mountVolumes mounts the filesystems of c's volumes that the local driver's options
// name (a tmpfs, a device, a host directory bound), which stay mounted while a container
// that uses them runs.
func (e *Engine) mountVolumes(ctx context.Context, c *Container) error {
	e.volMu.Lock()
	defer e.volMu.Unlock()
	for _, m := range c.Mounts {
		if m.Type != "volume" {
			continue
		}
		if err := e.volumes.Mount(ctx, m.Source); err != nil {
			e.releaseVolumesLocked(c)
			return err
		}
	}
	return nil
}

// releaseVolumes unmounts the filesystems of c's volumes that no other running
// container uses (c stopped, or did not start).
func (e *Engine) releaseVolumes(c *Container) {
	e.volMu.Lock()
	defer e.volMu.Unlock()
	e.releaseVolumesLocked(c)
}

func (e *Engine) releaseVolumesLocked(c *Container) {
	inUse := e.runningVolumes(c.ID)
	for _, m := range c.Mounts {
		if m.Type == "volume" && !inUse[m.Source] {
			if err := e.volumes.Unmount(m.Source); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				e.log.Warn("unmount a volume", "volume", m.Source, "err", err)
			}
		}
	}
}

// releaseIdleVolumes unmounts the filesystems of the volumes no running container uses:
// what a daemon that stopped meanwhile left mounted.
func (e *Engine) releaseIdleVolumes() {
	vs, err := e.volumes.List()
	if err != nil {
		return
	}
	e.volMu.Lock()
	defer e.volMu.Unlock()
	inUse := e.runningVolumes("")
	for _, v := range vs {
		if len(v.Options) > 0 && !inUse[v.Name] {
			if err := e.volumes.Unmount(v.Name); err != nil {
				e.log.Warn("unmount an idle volume", "volume", v.Name, "err", err)
			}
		}
	}
}

// runningVolumes are the volumes that containers other than except use while their
// process lives (starting, running, paused or stopping).
func (e *Engine) runningVolumes(except string) map[string]bool {
	out := map[string]bool{}
	for _, c := range e.List() {
		if c.ID == except || !c.State.Live() {
			continue
		}
		for _, m := range c.Mounts {
			if m.Type == "volume" {
				out[m.Source] = true
			}
		}
	}
	return out
}

// runtimeMounts are a container's mounts as the runtime takes them.
func (e *Engine) runtimeMounts(c *Container) ([]rt.Mount, error) {
	out := make([]rt.Mount, 0, len(c.Mounts))
	for _, m := range c.Mounts {
		var opts []string
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		switch m.Type {
		case "bind":
			source := m.Source
			if m.InTree {
				source = filepath.Join(e.TreeDir(), m.Source) // where it is; a start mounts it safely
			}
			out = append(out, rt.Mount{Destination: m.Target, Type: "bind", Source: source, Options: opts})
		case "volume":
			v, err := e.volumes.Get(m.Source)
			if err != nil {
				return nil, fmt.Errorf("volume of %s: %w", m.Target, err)
			}
			out = append(out, rt.Mount{Destination: m.Target, Type: "bind", Source: v.Mountpoint, Options: opts})
		case "tmpfs":
			opts = append(opts, "nosuid", "nodev", "noexec")
			if m.TmpfsSize > 0 {
				opts = append(opts, fmt.Sprintf("size=%d", m.TmpfsSize))
			}
			if m.TmpfsMode != 0 {
				opts = append(opts, fmt.Sprintf("mode=%o", m.TmpfsMode))
			}
			out = append(out, rt.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: opts})
		}
	}
	return out, nil
}

// anonymousVolumes maps the targets of the volumes made for c to their names.
func (e *Engine) anonymousVolumes(c *Container) map[string]string {
	out := map[string]string{}
	for _, m := range c.Mounts {
		if m.Type == "volume" && m.Anonymous {
			out[path.Clean(m.Target)] = m.Source
		}
	}
	return out
}

// emptyDir removes what dir holds, keeping dir.
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// removeAnonymousVolumes removes the anonymous volumes of a removed container (rm -v,
// and --rm), unless another container uses them too.
func (e *Engine) removeAnonymousVolumes(ctx context.Context, c *Container) {
	for _, m := range c.Mounts {
		if m.Type != "volume" || !m.Anonymous {
			continue
		}
		if err := e.RemoveVolume(ctx, m.Source); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			e.log.Warn("remove an anonymous volume", "container", c.Name, "volume", m.Source, "err", err)
		}
	}
}

// validateMounts checks a spec's mounts: each valid, no two at one target.
func validateMounts(ms []volumes.Mount) error {
	seen := map[string]bool{}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			return err
		}
		t := path.Clean(m.Target)
		if seen[t] {
			return errdefs.Invalid(fmt.Errorf("duplicate mount point: %s", t))
		}
		seen[t] = true
	}
	return nil
}

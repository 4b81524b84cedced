package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Root filesystem modes of vm containers.
const (
	// RootfsVirtiofs shares the container's root filesystem, the oci runtime's overlay
	// mount, with virtio-fs: the host sees the container's files as they change.
	RootfsVirtiofs = "virtiofs"
	// RootfsErofs gives the guest its image as a read-only erofs disk, shared by the
	// containers of the image, under an overlay whose writable layer is an ext4 disk of
	// the container's own: faster reads, but the host no longer sees what the container
	// writes (docs/benchmarks.md).
	RootfsErofs = "erofs"
)

// CheckRootfsMode refuses an unknown mode.
func CheckRootfsMode(mode string) error {
	switch mode {
	case "", RootfsVirtiofs, RootfsErofs:
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("unknown vm root filesystem mode %q: want %s or %s", mode, RootfsVirtiofs, RootfsErofs))
}

// scratchSize is the size of a container's scratch disk: a sparse file, so only what
// the container writes takes room.
const scratchSize = "16G"

// blockRoot sets lc up for a root on disks: the image's erofs disk (made on first need)
// and the container's scratch disk beside its rootfs (made on its first start, kept
// across its restarts, removed with it).
func (r *Runtime) blockRoot(ctx context.Context, cfg *rt.Config, lc *LaunchConfig) error {
	h, err := v1.NewHash(cfg.Image)
	if err != nil || cfg.ImageView == nil {
		return fmt.Errorf("the %s root filesystem needs the container's image", RootfsErofs)
	}
	image, err := r.imageDisk(ctx, h, cfg.ImageView)
	if err != nil {
		return err
	}
	scratch := filepath.Join(filepath.Dir(cfg.Rootfs), "vm-scratch.ext4")
	if err := makeScratch(ctx, scratch); err != nil {
		return err
	}
	lc.Share.Rootfs = ""
	lc.Disks = []Disk{{Path: image, Serial: "image", ReadOnly: true}, {Path: scratch, Serial: "scratch"}}
	lc.Setup.Root = "/run/rootfs"
	lc.Setup.RootMounts = []proto.Mount{
		{Destination: "/run/image", Type: "erofs", Source: "serial:image", Options: []string{"ro"}},
		{Destination: "/run/scratch", Type: "ext4", Source: "serial:scratch"},
		{Destination: "/run/rootfs", Type: "overlay", Source: "overlay",
			Options: []string{"lowerdir=/run/image", "upperdir=/run/scratch/upper", "workdir=/run/scratch/work"}},
	}
	return nil
}

// imageDisk returns the erofs image of the image whose manifest digest is digest,
// making it from the image's files first if there is none.
func (r *Runtime) imageDisk(ctx context.Context, digest v1.Hash, view func(context.Context) (string, error)) (string, error) {
	path := filepath.Join(r.root, "erofs", digest.Hex+".erofs")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	r.erofsMu.Lock()
	defer r.erofsMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	dir, err := view(ctx)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		return "", errdefs.Unavailable(errors.New("the erofs root filesystem needs mkfs.erofs: apt-get install erofs-utils"))
	}
	// -T0: the same image gives the same disk.
	return path, mkfsInto(ctx, path, "mkfs.erofs", func(file string) []string { return []string{"--quiet", "-T0", file, dir} })
}

// mkfsInto makes the file system at path with a mkfs command, given its arguments for
// the file to make: made beside path and renamed into place, so that path is whole or
// absent.
func mkfsInto(ctx context.Context, path, mkfs string, args func(file string) []string) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	if out, err := exec.CommandContext(ctx, mkfs, args(tmp)...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %v: %s", mkfs, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, path)
}

// makeScratch makes a container's scratch disk, an ext4 file system holding the upper and
// work directories of the guest's overlay, unless it exists.
func makeScratch(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	skel, err := os.MkdirTemp(filepath.Dir(path), ".scratch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(skel)
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(skel, d), 0o755); err != nil {
			return err
		}
	}
	return mkfsInto(ctx, path, "mkfs.ext4", func(file string) []string {
		return []string{"-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", skel, file, scratchSize}
	})
}

// KeepImages removes the erofs disks of images that are gone (digests are those that
// remain). A disk a running container uses stays open in its QEMU until it stops.
func (r *Runtime) KeepImages(digests map[string]bool) {
	r.erofsMu.Lock()
	defer r.erofsMu.Unlock()
	disks, _ := filepath.Glob(filepath.Join(r.root, "erofs", "*.erofs"))
	for _, d := range disks {
		if !digests[v1.Hash{Algorithm: "sha256", Hex: strings.TrimSuffix(filepath.Base(d), ".erofs")}.String()] {
			os.Remove(d)
		}
	}
}

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

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

var digestHex = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// blockRoot sets lc up for a root on disks: the image's erofs disk (made on first need)
// and the container's scratch disk beside its rootfs (made on its first start, kept
// across its restarts, removed with it).
func (r *Runtime) blockRoot(ctx context.Context, cfg *rt.Config, lc *LaunchConfig) error {
	if !digestHex.MatchString(cfg.Image) || cfg.ImageView == nil {
		return fmt.Errorf("the %s root filesystem needs the container's image", RootfsErofs)
	}
	image, err := r.imageDisk(ctx, cfg.Image, cfg.ImageView)
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
func (r *Runtime) imageDisk(ctx context.Context, digest string, view func(context.Context) (string, error)) (string, error) {
	path := filepath.Join(r.root, "erofs", strings.TrimPrefix(digest, "sha256:")+".erofs")
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
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return "", errdefs.Unavailable(errors.New("the erofs root filesystem needs mkfs.erofs: apt-get install erofs-utils"))
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	// -T0: the same image gives the same disk.
	if out, err := exec.CommandContext(ctx, mkfs, "--quiet", "-T0", tmp, dir).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mkfs.erofs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return path, os.Rename(tmp, path)
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
	tmp := path + ".tmp"
	os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", skel, tmp, scratchSize)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, path)
}

// KeepImages removes the erofs disks of images that are gone (digests are those that
// remain). A disk a running container uses stays open in its QEMU until it stops.
func (r *Runtime) KeepImages(digests map[string]bool) {
	r.erofsMu.Lock()
	defer r.erofsMu.Unlock()
	disks, _ := filepath.Glob(filepath.Join(r.root, "erofs", "*.erofs"))
	for _, d := range disks {
		if !digests["sha256:"+strings.TrimSuffix(filepath.Base(d), ".erofs")] {
			os.Remove(d)
		}
	}
}

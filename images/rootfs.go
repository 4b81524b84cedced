package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// Rootfs drivers.
const (
	DriverOverlay = "overlay" // overlayfs: the image's snapshots as lower layers
	DriverCopy    = "copy"    // a plain copy of the image's layers, where overlayfs is missing
)

// Rootfs is a container's root filesystem.
type Rootfs struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Image  string `json:"image"` // manifest digest
	Driver string `json:"driver"`
	// Path is the directory the container sees as "/".
	Path string `json:"path"`
	// Upper is where the container's own changes are kept (overlay only).
	Upper string `json:"upper,omitempty"`
}

var rootfsID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func (s *Store) rootfsDir() string { return filepath.Join(s.root, "rootfs") }

func (s *Store) rootfsView(r *rootfsRecord) *Rootfs {
	dir := filepath.Join(s.rootfsDir(), r.ID)
	fs := &Rootfs{ID: r.ID, Owner: r.Owner, Image: r.Image.String(), Driver: r.Driver, Path: filepath.Join(dir, "merged")}
	if r.Driver == DriverOverlay {
		fs.Upper = filepath.Join(dir, "upper")
	}
	return fs
}

// CreateRootfs prepares a root filesystem with ID id for a container named owner, from
// the image that image names, and mounts it. While it exists the image cannot be removed.
func (s *Store) CreateRootfs(ctx context.Context, id, owner, image string) (*Rootfs, error) {
	if !rootfsID.MatchString(id) || len(id) > 128 {
		return nil, errdefs.Invalid(fmt.Errorf("invalid root filesystem ID %q", id))
	}
	s.mu.Lock()
	var rec *imageRecord
	r := &rootfsRecord{ID: id, Owner: owner, Driver: s.driver}
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if _, rec, _, err = resolveIn(tx, image); err != nil {
			return err
		}
		b := bucket(tx, bucketRootfs)
		if b.Get([]byte(id)) != nil {
			return errdefs.AlreadyExists(fmt.Errorf("root filesystem %s already exists", id))
		}
		r.Image = rec.Digest
		return putJSON(b, id, r)
	})
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	fs := s.rootfsView(r)
	if err := s.makeRootfs(ctx, rec, fs); err != nil {
		s.RemoveRootfs(ctx, id)
		return nil, fmt.Errorf("create root filesystem %s: %w", id, storeError(err))
	}
	return fs, nil
}

// lowerDirs are the snapshot directories of rec, top layer first, as overlayfs wants them.
func (s *Store) lowerDirs(rec *imageRecord) []string {
	out := make([]string, len(rec.Layers))
	for i, l := range rec.Layers {
		out[len(out)-1-i] = s.snaps.path(l.ChainID)
	}
	return out
}

func (s *Store) makeRootfs(ctx context.Context, rec *imageRecord, fs *Rootfs) error {
	dir := filepath.Dir(fs.Path)
	if err := os.MkdirAll(fs.Path, 0o755); err != nil {
		return err
	}
	if fs.Driver == DriverCopy {
		return copyLayers(ctx, s.lowerDirs(rec), fs.Path)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return s.mountRootfs(rec, fs)
}

func (s *Store) mountRootfs(rec *imageRecord, fs *Rootfs) error {
	if fs.Driver != DriverOverlay {
		return nil
	}
	if mounted, err := isMountPoint(fs.Path); err != nil || mounted {
		return err
	}
	dir := filepath.Dir(fs.Path)
	lowers := s.lowerDirs(rec)
	if len(lowers) == 0 {
		// overlayfs needs a lower layer; an image without layers gets an empty one.
		empty := filepath.Join(dir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lowers = []string{empty}
	}
	return mountOverlay(lowers, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), fs.Path, false)
}

// RootfsPath is where root filesystem id is mounted when it is.
func (s *Store) RootfsPath(id string) string { return filepath.Join(s.rootfsDir(), id, "merged") }

// Rootfs returns the root filesystem id, mounting it if it is not (after a reboot).
func (s *Store) Rootfs(ctx context.Context, id string) (*Rootfs, error) {
	var r rootfsRecord
	var rec imageRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := getJSON(bucket(tx, bucketRootfs), id, &r); err != nil {
			if errors.Is(err, errNoRecord) {
				return errdefs.NotFound(fmt.Errorf("no root filesystem %s", id))
			}
			return err
		}
		return getJSON(bucket(tx, bucketManifests), r.Image.String(), &rec)
	})
	if err != nil {
		return nil, err
	}
	fs := s.rootfsView(&r)
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	if err := s.mountRootfs(&rec, fs); err != nil {
		return nil, fmt.Errorf("mount root filesystem %s: %w", id, err)
	}
	return fs, nil
}

// Unmount unmounts root filesystem id, keeping its content. A filesystem that is not
// mounted is left as it is.
func (s *Store) Unmount(ctx context.Context, id string) error {
	path := filepath.Join(s.rootfsDir(), id, "merged")
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	if mounted, err := isMountPoint(path); err != nil || !mounted {
		return err
	}
	return unmount(path)
}

// RemoveRootfs unmounts and deletes root filesystem id with the container's changes, and
// releases its image. A missing filesystem is not an error.
func (s *Store) RemoveRootfs(ctx context.Context, id string) error {
	if !rootfsID.MatchString(id) {
		return errdefs.Invalid(fmt.Errorf("invalid root filesystem ID %q", id))
	}
	if err := s.Unmount(ctx, id); err != nil {
		return fmt.Errorf("remove root filesystem %s: %w", id, err)
	}
	if err := fsutil.RemoveTree(filepath.Join(s.rootfsDir(), id)); err != nil {
		return fmt.Errorf("remove root filesystem %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketRootfs).Delete([]byte(id))
	})
}

// ListRootfs returns every root filesystem.
func (s *Store) ListRootfs(ctx context.Context) ([]*Rootfs, error) {
	var out []*Rootfs
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEach(bucket(tx, bucketRootfs), func(_ string, r *rootfsRecord) error {
			out = append(out, s.rootfsView(r))
			return nil
		})
	})
	return out, err
}

// chooseDriver returns the driver to use: the one asked for, or overlay where a test
// mount in the store's own directory works, else copy.
func (s *Store) chooseDriver(ctx context.Context, want string) (string, error) {
	switch want {
	case DriverCopy:
		return DriverCopy, nil
	case DriverOverlay, "":
	default:
		return "", errdefs.Invalid(fmt.Errorf("unknown storage driver %q (want %s or %s)", want, DriverOverlay, DriverCopy))
	}
	err := probeOverlay(s.blobs.ingest)
	if err == nil {
		return DriverOverlay, nil
	}
	if want == DriverOverlay {
		return "", fmt.Errorf("storage driver overlay: %w", err)
	}
	s.log.Warn("overlayfs is not usable on the data root; container root filesystems will be plain copies",
		"dir", s.root, "err", strings.TrimSpace(err.Error()))
	return DriverCopy, nil
}

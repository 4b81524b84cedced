package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Views are read-only directories with an image's file system, for the tree's
// images/.../rootfs/: the image's layers stacked by a read-only overlay mount without an
// upper directory, under views/<manifest hex>. An image of one layer is that layer's
// snapshot as it is. Views are mounted on first use and unmounted when their image goes
// and when the store closes.

func (s *Store) viewsDir() string { return filepath.Join(s.root, "views") }

// LayerPath is the directory with the unpacked content of the layer whose chain ID is
// chain: the layer's own files, with overlayfs whiteouts (0/0 character devices) for
// what it deletes. It is not to be written.
func (s *Store) LayerPath(chain string) (string, error) {
	h, err := v1.NewHash(chain)
	if err != nil {
		return "", errdefs.Invalid(fmt.Errorf("invalid chain ID %q", chain))
	}
	p := s.snaps.path(h)
	if _, err := os.Stat(p); err != nil {
		return "", errdefs.NotFound(fmt.Errorf("no layer %s", chain))
	}
	return p, nil
}

// ViewPath is where View puts the file system of image im.
func (s *Store) ViewPath(im *Image) string {
	switch len(im.Layers) {
	case 0:
		return filepath.Join(s.viewsDir(), "empty")
	case 1:
		if h, err := v1.NewHash(im.Layers[0].ChainID); err == nil {
			return s.snaps.path(h)
		}
	}
	if h, err := v1.NewHash(im.Digest); err == nil {
		return filepath.Join(s.viewsDir(), h.Hex)
	}
	return filepath.Join(s.viewsDir(), "invalid")
}

// View makes a read-only directory with the file system of the image arg names, at
// ViewPath, mounting it if need be.
func (s *Store) View(ctx context.Context, arg string) (string, error) {
	var rec *imageRecord
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		_, rec, _, err = resolveIn(tx, arg)
		return err
	}); err != nil {
		return "", err
	}
	switch len(rec.Layers) {
	case 0:
		empty := filepath.Join(s.viewsDir(), "empty")
		return empty, os.MkdirAll(empty, 0o755)
	case 1:
		return s.snaps.path(rec.Layers[0].ChainID), nil
	}
	if s.driver != DriverOverlay {
		return "", errdefs.Unavailable(fmt.Errorf("the merged view of an image of several layers needs overlayfs, and this store uses the %s driver", s.driver))
	}
	target := filepath.Join(s.viewsDir(), rec.Digest.Hex)
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if mounted, err := isMountPoint(target); err != nil || mounted {
		return target, err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", err
	}
	if err := mountOverlay(s.lowerDirs(rec), "", "", target, true); err != nil {
		return "", err
	}
	return target, nil
}

// dropViews unmounts and removes the views of images that are not in live (all of them
// if live is nil).
func (s *Store) dropViews(live map[v1.Hash]bool) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	ds, err := os.ReadDir(s.viewsDir())
	if err != nil {
		return
	}
	for _, d := range ds {
		if d.Name() == "empty" || live[v1.Hash{Algorithm: "sha256", Hex: d.Name()}] {
			continue
		}
		p := filepath.Join(s.viewsDir(), d.Name())
		if mounted, err := isMountPoint(p); err == nil && mounted {
			if err := unmount(p); err != nil {
				s.log.Warn("unmount an image view", "path", p, "err", err)
				continue
			}
		}
		os.Remove(p)
	}
}

//go:build !linux

package images

import (
	"context"
	"errors"
	"io"
)

// errUnsupported is what the parts of the store that need Linux (overlayfs, mknod,
// openat2-confined unpacking) return elsewhere.
var errUnsupported = errors.New("not supported on this operating system")

func unpackTar(ctx context.Context, r io.Reader, dir string) (int64, error) {
	return 0, errUnsupported
}

func mountOverlay(lowers []string, upper, work, target string, readOnly bool) error {
	return errUnsupported
}

func unmount(target string) error { return errUnsupported }

func isMountPoint(path string) (bool, error) { return false, nil }

func probeOverlay(dir string) error { return errUnsupported }

func copyLayers(ctx context.Context, lowers []string, dst string) error {
	return errUnsupported
}

const overlayOpaqueXattr = "trusted.overlay.opaque"

package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Whiteout names of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackLayer reads a layer (gzip, zstd or plain tar, told apart by their magic bytes)
// from r and unpacks it into dir, which must exist and be empty. It checks the
// uncompressed stream against diffID, reads r to its end (so a caller teeing r into the
// content store sees every byte), and returns the size of the unpacked files.
//
// dir is an overlayfs layer afterwards: deleted files are whiteout devices and opaque
// directories carry the overlay opaque xattr.
func unpackLayer(ctx context.Context, r io.Reader, diffID v1.Hash, dir string) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	dr, err := decompress(br)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	h := sha256.New()
	tr := io.TeeReader(dr, h)
	size, err := unpackTar(ctx, tr, dir)
	if err != nil {
		return 0, err
	}
	// The tar reader stops at the end-of-archive marker; hash what follows it too.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return 0, err
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != diffID.String() {
		return 0, fmt.Errorf("%w: uncompressed content hashes to %s, want diff ID %s", errMismatch, got, diffID)
	}
	return size, nil
}

// decompress returns a reader of the uncompressed stream of br.
func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

// cleanEntryName turns a tar entry name into a path relative to the layer root. A leading
// slash is dropped (absolute names are confined to the root, as GNU tar does); a name
// whose ".." components climb above the root is refused.
func cleanEntryName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errdefs.Invalid(fmt.Errorf("entry %q: name contains NUL", name))
	}
	depth := 0
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", errdefs.Invalid(fmt.Errorf("entry %q: path escapes the layer root", name))
			}
		default:
			depth++
		}
	}
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/"), nil
}

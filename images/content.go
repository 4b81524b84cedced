package images

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobs is the content store: every blob (manifest, config, layer) stored once, named by
// its digest. A blob only appears under its name after its size and digest have been
// checked, so a file in blobs/ is always whole and verified; partial writes live in
// ingest/ and are removed when they fail or at the next start.
type blobs struct {
	dir    string // <root>/blobs/sha256
	ingest string // <root>/ingest, on the same filesystem
}

func (b *blobs) path(d v1.Hash) string {
	return filepath.Join(b.dir, d.Hex)
}

func (b *blobs) has(d v1.Hash) bool {
	_, err := os.Stat(b.path(d))
	return err == nil
}

func (b *blobs) open(d v1.Hash) (*os.File, error) {
	f, err := os.Open(b.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, fs.ErrNotExist)
	}
	return f, err
}

func (b *blobs) read(d v1.Hash) ([]byte, error) {
	return os.ReadFile(b.path(d))
}

// put stores a small blob held in memory, verifying it against d.
func (b *blobs) put(d v1.Hash, data []byte) error {
	if b.has(d) {
		return nil
	}
	w, err := b.writer(d, int64(len(data)))
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit()
}

// remove deletes the blob d; a missing blob is not an error.
func (b *blobs) remove(d v1.Hash) error {
	err := os.Remove(b.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// list returns the digests of all stored blobs.
func (b *blobs) list() ([]v1.Hash, error) { return listHashes(b.dir) }

// listHashes reads a directory whose entries are named by sha256 hex digests.
func listHashes(dir string) ([]v1.Hash, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Hash, 0, len(ents))
	for _, e := range ents {
		out = append(out, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
	}
	return out, nil
}

// writer starts writing blob d of the given size (-1 if unknown) to a temporary file.
func (b *blobs) writer(d v1.Hash, size int64) (*blobWriter, error) {
	if d.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm %q", d, d.Algorithm)
	}
	f, err := os.CreateTemp(b.ingest, "blob-"+d.Hex[:12]+"-")
	if err != nil {
		return nil, err
	}
	return &blobWriter{b: b, f: f, want: d, size: size, h: sha256.New()}, nil
}

// blobWriter writes one blob; Commit checks it and makes it visible, Close discards it
// unless it was committed.
type blobWriter struct {
	b         *blobs
	f         *os.File
	want      v1.Hash
	size      int64
	n         int64
	h         hash.Hash
	committed bool
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// verify checks the size and digest of what was written.
func (w *blobWriter) verify() error {
	if w.size >= 0 && w.n != w.size {
		return fmt.Errorf("blob %s: size mismatch: got %d bytes, want %d", w.want, w.n, w.size)
	}
	if got := fmt.Sprintf("%x", w.h.Sum(nil)); got != w.want.Hex {
		return fmt.Errorf("blob %s: digest mismatch: content hashes to sha256:%s", w.want, got)
	}
	return nil
}

// Commit verifies what was written and moves the blob into place.
func (w *blobWriter) Commit() error {
	if err := w.verify(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", w.want, err)
	}
	if err := os.Chmod(w.f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), w.b.path(w.want)); err != nil {
		return fmt.Errorf("blob %s: %w", w.want, err)
	}
	w.committed = true
	return nil
}

// Close discards the temporary file unless the blob was committed.
func (w *blobWriter) Close() error {
	if w.committed {
		return nil
	}
	w.f.Close()
	return os.Remove(w.f.Name())
}

var _ io.WriteCloser = (*blobWriter)(nil)

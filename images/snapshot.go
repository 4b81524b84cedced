package images

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// snapshots is the layer cache: one directory per chain ID holding that layer's changes
// in overlayfs form.
type snapshots struct {
	dir    string // <root>/snapshots
	ingest string // <root>/ingest, on the same filesystem
}

func (s *snapshots) path(chain v1.Hash) string {
	return filepath.Join(s.dir, chain.Hex)
}

func (s *snapshots) has(chain v1.Hash) bool {
	_, err := os.Stat(s.path(chain))
	return err == nil
}

// temp makes an empty directory to unpack a layer into. Its mode is what a root
// directory has when the layer does not say (0755, as in Docker); the store's own
// directory keeps others out.
func (s *snapshots) temp() (string, error) {
	dir, err := os.MkdirTemp(s.ingest, "snapshot-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// commit moves a fully unpacked and verified directory into place as chain's snapshot.
// If another unpack of the same chain won the race, tmp is dropped.
func (s *snapshots) commit(tmp string, chain v1.Hash) error {
	err := os.Rename(tmp, s.path(chain))
	if err != nil && s.has(chain) {
		return fsutil.RemoveTree(tmp)
	}
	return err
}

// remove deletes chain's snapshot. It is first renamed away so that a half-removed
// snapshot is never mistaken for a whole one.
func (s *snapshots) remove(chain v1.Hash) error {
	tmp, err := os.MkdirTemp(s.ingest, "remove-")
	if err != nil {
		return err
	}
	dead := filepath.Join(tmp, "fs")
	if err := os.Rename(s.path(chain), dead); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return fsutil.RemoveTree(tmp)
}

func (s *snapshots) list() ([]v1.Hash, error) { return listHashes(s.dir) }

// chainIDs computes the chain ID of every layer from the diff IDs, as the OCI image spec
// defines it: the first is the diff ID, each next one the digest of "parent diffID".
func chainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out[i] = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
	}
	return out
}

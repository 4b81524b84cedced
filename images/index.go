package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
)

// The index lives in one bucket of the daemon's database, with a sub-bucket per record
// kind. Keys are strings; values are JSON.
var (
	bucketImages    = []byte("images")
	bucketRefs      = []byte("refs")      // canonical reference -> refRecord
	bucketManifests = []byte("manifests") // manifest digest -> imageRecord
	bucketSnapshots = []byte("snapshots") // chain ID -> snapshotRecord
	bucketRootfs    = []byte("rootfs")    // container ID -> rootfsRecord
)

// refRecord is a name pointing at an image.
type refRecord struct {
	Name   string    `json:"name"`   // canonical reference
	Image  v1.Hash   `json:"image"`  // manifest digest of the image
	Target v1.Hash   `json:"target"` // what the registry resolved the name to (index or manifest)
	Added  time.Time `json:"added"`
	// Platforms are the manifest digests of the name's images for other platforms than
	// Image's, all stored (a multi-platform build or archive): they live as long as the
	// name, and a push of the name pushes an index of them all.
	Platforms []v1.Hash `json:"platforms,omitempty"`
}

// imageRecord is one image: a manifest, its config and its layers.
type imageRecord struct {
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Config    v1.Hash         `json:"config"`
	Platform  v1.Platform     `json:"platform"`
	Created   time.Time       `json:"created"`
	Stored    time.Time       `json:"stored"`
	Layers    []layerRecord   `json:"layers"`
	// Unsynced is the boot ID under which the image was stored, until a flush has put
	// it on disk (see durable.go).
	Unsynced string `json:"unsynced,omitempty"`
}

type layerRecord struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	ChainID   v1.Hash         `json:"chainID"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	Unpacked  int64           `json:"unpacked"`
}

// snapshotRecord describes an unpacked layer.
type snapshotRecord struct {
	Size int64 `json:"size"`
}

// rootfsRecord is a container's root filesystem, and the lease it holds on its image.
type rootfsRecord struct {
	ID     string  `json:"id"`
	Owner  string  `json:"owner"`
	Image  v1.Hash `json:"image"`
	Driver string  `json:"driver"`
}

func initIndex(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketImages)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketRefs, bucketManifests, bucketSnapshots, bucketRootfs} {
			if _, err := b.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

func bucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	return tx.Bucket(bucketImages).Bucket(name)
}

var errNoRecord = errors.New("no record")

func getJSON(b *bolt.Bucket, key string, v any) error {
	data := b.Get([]byte(key))
	if data == nil {
		return errNoRecord
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("index record %q: %w", key, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// forEach decodes every record of bucket b into a fresh T and calls fn with it.
func forEach[T any](b *bolt.Bucket, fn func(key string, v *T) error) error {
	return b.ForEach(func(k, data []byte) error {
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("index record %q: %w", k, err)
		}
		return fn(string(k), v)
	})
}

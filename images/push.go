package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
)

// blobSource gives the blobs of an image: the content store, or a loaded archive.
type blobSource interface {
	openBlob(d v1.Hash) (io.ReadCloser, error)
}

func (b *blobs) openBlob(d v1.Hash) (io.ReadCloser, error) { return b.open(d) }

// blobImage is a go-containerregistry image read from a blob source.
type blobImage struct {
	src       blobSource
	manifest  []byte
	config    []byte
	mediaType types.MediaType
	layers    map[v1.Hash]v1.Descriptor
}

func newBlobImage(src blobSource, rawManifest []byte) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	rc, err := src.openBlob(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	config, err := io.ReadAll(io.LimitReader(rc, maxMetadata+1))
	rc.Close()
	if err == nil && len(config) > maxMetadata {
		err = fmt.Errorf("config %s is larger than %d bytes", m.Config.Digest, maxMetadata)
	}
	if err != nil {
		return nil, err
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	bi := &blobImage{src: src, manifest: rawManifest, config: config, mediaType: mt, layers: map[v1.Hash]v1.Descriptor{}}
	for _, l := range m.Layers {
		bi.layers[l.Digest] = l
	}
	return partial.CompressedToImage(bi)
}

func (i *blobImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *blobImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *blobImage) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *blobImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := i.layers[h]
	if !ok {
		return nil, fmt.Errorf("blob %s is not a layer of this image", h)
	}
	return &blobLayer{src: i.src, desc: d}, nil
}

type blobLayer struct {
	src  blobSource
	desc v1.Descriptor
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error)  { return l.src.openBlob(l.desc.Digest) }
func (l *blobLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// image returns the stored image arg names as a go-containerregistry image, and the name
// record when arg is a name.
func (s *Store) image(arg string) (v1.Image, *imageRecord, *refRecord, error) {
	var rec *imageRecord
	var ref *refRecord
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		_, rec, ref, err = resolveIn(tx, arg)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	raw, err := s.blobs.read(rec.Digest)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s: manifest: %w", arg, err)
	}
	img, err := newBlobImage(&s.blobs, raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s: %w", arg, err)
	}
	return img, rec, ref, nil
}

// PushProgress is the state of a push: bytes sent of the total to send.
type PushProgress struct {
	Ref     string `json:"ref"`
	Status  string `json:"status"`
	Current int64  `json:"current"`
	Total   int64  `json:"total"`
	Digest  string `json:"digest,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Push sends the image arg names to a registry under target, or under its own name when
// target is empty. Blobs the registry has already are not sent again.
func (s *Store) Push(ctx context.Context, arg, target string, progress func(PushProgress)) (string, error) {
	if target == "" {
		target = arg
	}
	ref, err := ParseTag(target)
	if err != nil {
		return "", err
	}
	img, rec, name, err := s.image(arg)
	if err != nil {
		return "", err
	}
	defer s.hold(append([]v1.Hash{rec.Digest, rec.Config}, layerDigests(rec)...)...)()
	// A multi-platform name is pushed as an index of all its platforms' images.
	var idx v1.ImageIndex
	if name != nil && len(name.Platforms) > 0 {
		var release func()
		if idx, release, err = s.platformIndex(rec, img, name.Platforms); err != nil {
			return "", fmt.Errorf("push %s: %w", ref.Familiar(), err)
		}
		defer release()
	}
	p := PushProgress{Ref: ref.String(), Status: "pushing"}
	report := func(p PushProgress) {
		if progress != nil {
			progress(p)
		}
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Time{}
		for u := range updates {
			p.Current, p.Total = u.Complete, u.Total
			if time.Since(last) > 100*time.Millisecond {
				last = time.Now()
				report(p)
			}
		}
	}()
	opts := append(s.remoteOptions(ctx, rec.Platform), remote.WithProgress(updates))
	pushed := rec.Digest
	if idx != nil {
		err = remote.WriteIndex(s.remoteRef(ref).named, idx, opts...)
		if err == nil {
			pushed, err = idx.Digest()
		}
	} else {
		err = remote.Write(s.remoteRef(ref).named, img, opts...)
	}
	<-done
	if err != nil {
		err = fmt.Errorf("push %s: %w", ref.Familiar(), registryError(err))
		p.Status, p.Error = "failed", err.Error()
		report(p)
		return "", err
	}
	p.Status, p.Digest = "done", pushed.String()
	report(p)
	return pushed.String(), nil
}

// platformIndex is the index of a multi-platform name: its image (img, rec) and those
// of its other platforms, each described with its platform. The blobs are held until
// release.
func (s *Store) platformIndex(rec *imageRecord, img v1.Image, others []v1.Hash) (v1.ImageIndex, func(), error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	docker := rec.MediaType == types.DockerManifestSchema2
	var held []v1.Hash
	add := func(img v1.Image, rec *imageRecord) {
		p := rec.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: rec.MediaType, Platform: &p}})
	}
	add(img, rec)
	for _, d := range others {
		var orec imageRecord
		if err := s.db.View(func(tx *bolt.Tx) error { return getJSON(bucket(tx, bucketManifests), d.String(), &orec) }); err != nil {
			return nil, func() {}, fmt.Errorf("its image %s for another platform is not in the store: %w", d, err)
		}
		held = append(held, append([]v1.Hash{orec.Digest, orec.Config}, layerDigests(&orec)...)...)
		raw, err := s.blobs.read(d)
		if err != nil {
			return nil, func() {}, fmt.Errorf("image %s: manifest: %w", d, err)
		}
		oimg, err := newBlobImage(&s.blobs, raw)
		if err != nil {
			return nil, func() {}, fmt.Errorf("image %s: %w", d, err)
		}
		add(oimg, &orec)
		docker = docker && orec.MediaType == types.DockerManifestSchema2
	}
	// A Docker manifest list only when every image is Docker's; an OCI index otherwise.
	if docker {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	return idx, s.hold(held...), nil
}

package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Annotations naming an image in an OCI layout: containerd's (and Docker's) full name,
// and the OCI one, which is often only a tag.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// dockerManifestEntry is one image of a docker save archive's manifest.json.
type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Save writes the images args name to w as one tar archive that is both an OCI image
// layout (oci-layout, index.json, blobs/) and a docker save archive (manifest.json),
// as Docker 25 and later write it: docker load, podman load, skopeo and Save's own Load
// all read it. Each blob is written once.
func (s *Store) Save(ctx context.Context, w io.Writer, args []string) error {
	if len(args) == 0 {
		return errdefs.Invalid(errors.New("save: no image named"))
	}
	var (
		index    = v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
		docker   []dockerManifestEntry
		written  = map[v1.Hash]bool{}
		order    []v1.Hash
		dockerAt = map[v1.Hash]int{}
	)
	for _, arg := range args {
		_, rec, ref, err := s.image(arg)
		if err != nil {
			return fmt.Errorf("save %s: %w", arg, err)
		}
		desc := v1.Descriptor{MediaType: rec.MediaType, Digest: rec.Digest, Platform: &rec.Platform}
		if info, err := os.Stat(s.blobs.path(rec.Digest)); err == nil {
			desc.Size = info.Size()
		}
		var tags []string
		if ref != nil {
			if r, err := ParseReference(ref.Name); err == nil && r.Tag() != "" {
				desc.Annotations = map[string]string{annotationImageName: ref.Name, annotationRefName: r.Tag()}
				tags = []string{r.Familiar()}
			}
		}
		index.Manifests = append(index.Manifests, desc)
		if i, ok := dockerAt[rec.Digest]; ok {
			docker[i].RepoTags = append(docker[i].RepoTags, tags...)
		} else {
			entry := dockerManifestEntry{Config: blobName(rec.Config), RepoTags: tags}
			for _, l := range rec.Layers {
				entry.Layers = append(entry.Layers, blobName(l.Digest))
			}
			dockerAt[rec.Digest] = len(docker)
			docker = append(docker, entry)
		}
		for _, d := range append([]v1.Hash{rec.Digest, rec.Config}, layerDigests(rec)...) {
			if !written[d] {
				written[d] = true
				order = append(order, d)
			}
		}
	}
	// An rmi while the archive is written must not collect what it is reading.
	defer s.hold(order...)()
	tw := tar.NewWriter(w)
	now := time.Now()
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: now, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	for _, d := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.copyBlob(tw, d, now); err != nil {
			return fmt.Errorf("save: blob %s: %w", d, err)
		}
	}
	ij, _ := json.Marshal(index)
	if err := put("index.json", ij); err != nil {
		return err
	}
	dj, _ := json.Marshal(docker)
	if err := put("manifest.json", dj); err != nil {
		return err
	}
	return tw.Close()
}

func layerDigests(rec *imageRecord) []v1.Hash {
	out := make([]v1.Hash, len(rec.Layers))
	for i, l := range rec.Layers {
		out[i] = l.Digest
	}
	return out
}

func blobName(d v1.Hash) string { return "blobs/" + d.Algorithm + "/" + d.Hex }

func (s *Store) copyBlob(tw *tar.Writer, d v1.Hash, mtime time.Time) error {
	f, err := s.blobs.open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobName(d), Mode: 0o644, Size: info.Size(), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Loaded is what Load brought into the store.
type Loaded struct {
	Names []string `json:"names"` // canonical names given to loaded images
	IDs   []string `json:"ids"`   // image IDs of loaded images that came without a name
}

// Load reads an archive from r and stores the images in it: an OCI image layout (as
// written by Save, skopeo's oci-archive, or a directory tarred up) or a docker save
// archive. Layers already in the store are not unpacked again. progress, if set, is
// called as in Pull.
func (s *Store) Load(ctx context.Context, r io.Reader, progress func(Progress)) (*Loaded, error) {
	spool, err := os.CreateTemp(s.blobs.ingest, "load-")
	if err != nil {
		return nil, storeError(err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if _, err := io.Copy(spool, r); err != nil {
		return nil, fmt.Errorf("load: read archive: %w", storeError(err))
	}
	return s.LoadFile(ctx, spool, progress)
}

// LoadFile loads the archive in f as Load does, reading it in place (a build's result,
// spooled already).
func (s *Store) LoadFile(ctx context.Context, f *os.File, progress func(Progress)) (*Loaded, error) {
	ar, err := indexArchive(f)
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("load: %w", err))
	}
	out := &Loaded{Names: []string{}, IDs: []string{}}
	if _, ok := ar.entries["index.json"]; ok {
		err = s.loadOCI(ctx, ar, out, progress)
	} else if _, ok := ar.entries["manifest.json"]; ok {
		err = s.loadDocker(ctx, ar, out, progress)
	} else {
		err = errdefs.Invalid(errors.New("not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save)"))
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return out, nil
}

// archive is a tar file with the place of each regular file in it, so blobs can be read
// in any order without unpacking the archive.
type archive struct {
	f       *os.File
	entries map[string]*io.SectionReader
}

type offsetReader struct {
	r io.Reader
	n int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.n += int64(n)
	return n, err
}

func indexArchive(f *os.File) (*archive, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	or := &offsetReader{r: f}
	tr := tar.NewReader(or)
	ar := &archive{f: f, entries: map[string]*io.SectionReader{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		// The tar reader has read exactly up to the entry's data.
		ar.entries[name] = io.NewSectionReader(f, or.n, hdr.Size)
	}
	return ar, nil
}

// maxMetadata bounds what is read into memory from an archive: an index, a manifest,
// a config. Real ones are kilobytes; a hostile archive must not exhaust memory.
const maxMetadata = 64 << 20

func (ar *archive) read(name string) ([]byte, error) {
	sr, ok := ar.entries[name]
	if !ok {
		return nil, fmt.Errorf("archive has no %s", name)
	}
	if sr.Size() > maxMetadata {
		return nil, fmt.Errorf("archive's %s is %d bytes, more than %d", name, sr.Size(), maxMetadata)
	}
	return io.ReadAll(io.NewSectionReader(sr, 0, sr.Size()))
}

func (ar *archive) openBlob(d v1.Hash) (io.ReadCloser, error) {
	sr, ok := ar.entries[blobName(d)]
	if !ok {
		return nil, fmt.Errorf("archive has no blob %s", d)
	}
	return io.NopCloser(io.NewSectionReader(sr, 0, sr.Size())), nil
}

func (s *Store) loadOCI(ctx context.Context, ar *archive, out *Loaded, progress func(Progress)) error {
	raw, err := ar.read("index.json")
	if err != nil {
		return err
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("index.json: %w", err))
	}
	if len(idx.Manifests) == 0 {
		return errdefs.Invalid(errors.New("index.json lists no image"))
	}
	for _, desc := range idx.Manifests {
		target := desc.Digest
		var others []v1.Descriptor
		if desc.MediaType.IsIndex() {
			if desc, others, err = s.pickFromArchiveIndex(ar, desc); err != nil {
				return err
			}
		}
		if !desc.MediaType.IsImage() {
			continue
		}
		rawManifest, err := ar.read(blobName(desc.Digest))
		if err != nil {
			return errdefs.Invalid(err)
		}
		img, err := newBlobImage(ar, rawManifest)
		if err != nil {
			return errdefs.Invalid(err)
		}
		var names []*refRecord
		if n := layoutName(desc.Annotations); n != "" {
			names = append(names, &refRecord{Name: n, Target: target, Added: time.Now().UTC()})
		}
		// The other platforms of a named index are stored too, first, held from prune
		// until the name that holds them is recorded with the host's image.
		release := func() {}
		if len(names) > 0 && len(others) > 0 {
			if release, err = s.loadPlatforms(ctx, ar, others, names[0], progress); err != nil {
				return err
			}
		}
		err = s.loadImage(ctx, img, names, out, progress)
		release()
		if err != nil {
			return err
		}
	}
	return nil
}

// loadPlatforms stores the images of the other platforms of a multi-platform name ref
// from an archive, each without a name, and lists them in ref. They are held (prune
// leaves them) until release, once ref is recorded.
func (s *Store) loadPlatforms(ctx context.Context, ar *archive, others []v1.Descriptor, ref *refRecord, progress func(Progress)) (release func(), err error) {
	var digests []v1.Hash
	for _, o := range others {
		digests = append(digests, o.Digest)
	}
	release = s.hold(digests...)
	for _, o := range others {
		raw, err := ar.read(blobName(o.Digest))
		if err == nil {
			var oimg v1.Image
			if oimg, err = newBlobImage(ar, raw); err == nil {
				err = s.loadImage(ctx, oimg, nil, &Loaded{}, progress)
			} else {
				err = errdefs.Invalid(err)
			}
		} else {
			err = errdefs.Invalid(err)
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("%s image: %w", platformString(*o.Platform), err)
		}
	}
	ref.Platforms = digests
	return release, nil
}

// pickFromArchiveIndex chooses the host's platform from a multi-platform index, and
// gives the images of the other platforms that the archive holds too (not attestations,
// whose platform is unknown/unknown).
func (s *Store) pickFromArchiveIndex(ar *archive, desc v1.Descriptor) (v1.Descriptor, []v1.Descriptor, error) {
	raw, err := ar.read(blobName(desc.Digest))
	if err != nil {
		return desc, nil, errdefs.Invalid(err)
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
	if err != nil {
		return desc, nil, errdefs.Invalid(fmt.Errorf("index %s: %w", desc.Digest, err))
	}
	want := s.hostPlatform()
	var host *v1.Descriptor
	var others []v1.Descriptor
	for _, m := range idx.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() || m.Platform.OS == "unknown" {
			continue
		}
		if _, ok := ar.entries[blobName(m.Digest)]; !ok {
			continue
		}
		if host == nil && platformMatches(*m.Platform, want) {
			m.Annotations = desc.Annotations
			host = &m
			continue
		}
		if (host == nil || m.Digest != host.Digest) && !slices.ContainsFunc(others, func(o v1.Descriptor) bool { return o.Digest == m.Digest }) {
			others = append(others, m)
		}
	}
	if host == nil {
		if len(others) == 0 {
			return desc, nil, errdefs.NotFound(fmt.Errorf("index %s has no image for %s in the archive", desc.Digest, platformString(want)))
		}
		// None for the host (a build for arm64 and arm/v7 on amd64): the first takes
		// the name, and runs under emulation.
		others[0].Annotations = desc.Annotations
		return others[0], others[1:], nil
	}
	return *host, others, nil
}

// layoutName is the full name an OCI layout gives an image, or "" when it gives none or
// only a tag (which names no repository).
func layoutName(ann map[string]string) string {
	for _, k := range []string{annotationImageName, annotationRefName} {
		n := ann[k]
		if n == "" || !strings.ContainsAny(n, "/:") {
			continue
		}
		if r, err := ParseTag(n); err == nil {
			return r.String()
		}
	}
	return ""
}

func (s *Store) loadDocker(ctx context.Context, ar *archive, out *Loaded, progress func(Progress)) error {
	raw, err := ar.read("manifest.json")
	if err != nil {
		return err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return errdefs.Invalid(fmt.Errorf("manifest.json: %w", err))
	}
	opener := func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(ar.f, 0, 1<<62)), nil
	}
	for _, e := range entries {
		// go-containerregistry reads the config into memory: bound it first.
		if _, err := ar.read(strings.TrimPrefix(path.Clean("/"+e.Config), "/")); err != nil {
			return errdefs.Invalid(err)
		}
		var names []*refRecord
		var tag *name.Tag
		for _, t := range e.RepoTags {
			r, err := ParseTag(t)
			if err != nil {
				return err
			}
			names = append(names, &refRecord{Name: r.String(), Added: time.Now().UTC()})
			if tag == nil {
				nt, err := name.NewTag(t)
				if err != nil {
					return errdefs.Invalid(err)
				}
				tag = &nt
			}
		}
		if tag == nil && len(entries) > 1 {
			return errdefs.Invalid(errors.New("manifest.json lists several images and one has no name"))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return errdefs.Invalid(err)
		}
		if err := s.loadImage(ctx, img, names, out, progress); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) loadImage(ctx context.Context, img v1.Image, names []*refRecord, out *Loaded, progress func(Progress)) error {
	label := "(unnamed image)"
	if len(names) > 0 {
		label = names[0].Name
	}
	st := newPullState(label)
	defer s.startPull(st)()
	stop := st.report(progress, 100*time.Millisecond)
	rec, err := s.ingest(ctx, img, nil, st, names)
	if err != nil {
		st.set(func(p *Progress) { p.Status, p.Error = PullFailed, err.Error() })
		stop()
		return err
	}
	st.set(func(p *Progress) { p.Status = PullDone })
	stop()
	if len(names) == 0 {
		out.IDs = append(out.IDs, rec.Config.String())
	}
	for _, n := range names {
		out.Names = append(out.Names, n.Name)
	}
	return nil
}

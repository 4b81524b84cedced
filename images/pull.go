package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

type pullOptions struct {
	platform *v1.Platform
	progress func(Progress)
}

// PullOption configures one pull.
type PullOption func(*pullOptions)

// WithPlatform chooses the image for platform p from a multi-platform image.
func WithPlatform(p v1.Platform) PullOption {
	return func(o *pullOptions) { o.platform = &p }
}

// WithProgress has fn called with the pull's progress as it changes (at most ten times a
// second) and once at the end. fn runs on its own goroutine and must not block long.
func WithProgress(fn func(Progress)) PullOption {
	return func(o *pullOptions) { o.progress = fn }
}

// ParsePlatform parses "os/arch[/variant]".
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, errdefs.Invalid(fmt.Errorf("invalid platform %q: want os/arch[/variant]", s))
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// Pull fetches the image ref names from its registry into the store and names it ref.
// Layers already in the store are neither downloaded nor unpacked again. Nothing becomes
// visible until every blob has been verified and every layer unpacked.
func (s *Store) Pull(ctx context.Context, refStr string, opts ...PullOption) (*Image, error) {
	var o pullOptions
	for _, opt := range opts {
		opt(&o)
	}
	ref, err := ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	platform := s.hostPlatform()
	if o.platform != nil {
		platform = *o.platform
	}
	st := newPullState(ref.String())
	defer s.startPull(st)()
	stop := st.report(o.progress, 100*time.Millisecond)
	defer stop()

	im, err := s.pull(ctx, ref, platform, st)
	if err != nil {
		err = fmt.Errorf("pull %s: %w", ref.Familiar(), err)
		st.set(func(p *Progress) { p.Status, p.Error = PullFailed, err.Error() })
		return nil, err
	}
	st.set(func(p *Progress) { p.Status = PullDone })
	return im, nil
}

func (s *Store) pull(ctx context.Context, ref Reference, platform v1.Platform, st *pullState) (*Image, error) {
	var img v1.Image
	var target v1.Hash
	err := s.retry(ctx, "manifest of "+ref.String(), func() (err error) {
		img, target, err = s.resolveRemote(ctx, ref, platform)
		if err != nil && unreachable(err) {
			// Nothing answers at that address: most likely a wrong name, not a
			// registry that restarts. Say so at once.
			return noRetry{err}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	name := &refRecord{Name: ref.String(), Target: target, Added: time.Now().UTC()}
	client, err := s.newBlobClient(ctx, ref)
	if err != nil {
		return nil, err
	}
	rec, err := s.ingest(ctx, img, client.open, st, []*refRecord{name})
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, rec.Digest.String())
}

func (s *Store) remoteOptions(ctx context.Context, platform v1.Platform) []remote.Option {
	return append(s.baseRemoteOptions(ctx), remote.WithPlatform(platform), remote.WithJobs(max(s.opts.downloads, 4)))
}

// baseRemoteOptions are the options of every request to a registry.
func (s *Store) baseRemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.opts.keychain),
		remote.WithTransport(s.transport),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
		remote.WithUserAgent("dutchman"),
	}
}

// remoteRef allows plain HTTP where the store allows it.
func (s *Store) remoteRef(ref Reference) Reference {
	if s.transport.allowsInsecure(ref.Registry()) {
		return ref.withInsecure()
	}
	return ref
}

// resolveRemote asks the registry what ref names and picks the image for platform. It
// returns the image and the digest the name resolved to (an index or the manifest).
func (s *Store) resolveRemote(ctx context.Context, ref Reference, platform v1.Platform) (v1.Image, v1.Hash, error) {
	desc, err := remote.Get(s.remoteRef(ref).named, s.remoteOptions(ctx, platform)...)
	if err != nil {
		return nil, v1.Hash{}, registryError(err)
	}
	if want := ref.Digest(); want != "" && desc.Digest.String() != want {
		return nil, v1.Hash{}, errdefs.Unavailable(fmt.Errorf("%w: registry sent manifest %s for %s", errMismatch, desc.Digest, want))
	}
	switch {
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		return img, desc.Digest, registryErrorOrNil(err)
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, v1.Hash{}, registryError(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, v1.Hash{}, registryError(err)
		}
		var have []string
		for _, d := range m.Manifests {
			if d.Platform == nil || !d.MediaType.IsImage() {
				continue
			}
			if platformMatches(*d.Platform, platform) {
				img, err := idx.Image(d.Digest)
				return img, desc.Digest, registryErrorOrNil(err)
			}
			have = append(have, platformString(*d.Platform))
		}
		return nil, v1.Hash{}, errdefs.NotFound(fmt.Errorf("no image for platform %s (the index has %s)",
			platformString(platform), strings.Join(have, ", ")))
	default:
		return nil, v1.Hash{}, errdefs.Invalid(fmt.Errorf("%s is a %s, not an image", ref.Familiar(), desc.MediaType))
	}
}

func registryErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return registryError(err)
}

// platformMatches tells whether an index entry for have serves a request for want. A
// variant is compared only when both sides name one.
func platformMatches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	return have.Variant == "" || want.Variant == "" || have.Variant == want.Variant
}

// layerMediaTypes are the layer formats the store can unpack.
var layerMediaTypes = map[types.MediaType]bool{
	types.DockerLayer:                    true,
	types.DockerUncompressedLayer:        true,
	types.DockerForeignLayer:             true,
	types.OCILayer:                       true,
	types.OCILayerZStd:                   true,
	types.OCIUncompressedLayer:           true,
	types.OCIRestrictedLayer:             true,
	types.OCIUncompressedRestrictedLayer: true,
}

// ingest stores img: its layers (fetched with open where set, else read from img;
// downloaded and unpacked concurrently, or reused), its
// config and manifest, then records the image and its names in one transaction.
func (s *Store) ingest(ctx context.Context, img v1.Image, open blobOpener, st *pullState, names []*refRecord) (*imageRecord, error) {
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, registryError(err)
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(rawManifest))}
	st.set(func(p *Progress) { p.Digest = digest.String() })
	manifest, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("manifest %s: %w", digest, err))
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return nil, registryError(err)
	}
	rawConfig, err := s.readConfig(ctx, img, manifest.Config.Digest)
	if err != nil {
		return nil, err
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(rawConfig)); got != manifest.Config.Digest.Hex {
		return nil, errdefs.Unavailable(fmt.Errorf("%w: config %s hashes to sha256:%s", errMismatch, manifest.Config.Digest, got))
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("config %s: %w", manifest.Config.Digest, err))
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, errdefs.Invalid(fmt.Errorf("image %s: manifest has %d layers but config has %d diff IDs",
			digest, len(manifest.Layers), len(cfg.RootFS.DiffIDs)))
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, registryError(err)
	}
	if len(layers) != len(manifest.Layers) {
		return nil, errdefs.Invalid(fmt.Errorf("image %s: %d layers, manifest lists %d", digest, len(layers), len(manifest.Layers)))
	}

	chains := chainIDs(cfg.RootFS.DiffIDs)
	rec := &imageRecord{
		Digest: digest, MediaType: mediaType, Config: manifest.Config.Digest,
		Platform: v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion},
		Created:  cfg.Created.Time, Stored: time.Now().UTC(),
		Layers: make([]layerRecord, len(layers)),
	}
	keys := []v1.Hash{digest, manifest.Config.Digest}
	progress := make([]LayerProgress, len(layers))
	for i, d := range manifest.Layers {
		if !layerMediaTypes[d.MediaType] {
			return nil, errdefs.Invalid(fmt.Errorf("layer %s: unsupported media type %q", d.Digest, d.MediaType))
		}
		rec.Layers[i] = layerRecord{Digest: d.Digest, DiffID: cfg.RootFS.DiffIDs[i], ChainID: chains[i], MediaType: d.MediaType, Size: d.Size}
		keys = append(keys, d.Digest, chains[i])
		progress[i] = LayerProgress{Digest: d.Digest.String(), Status: LayerWaiting, Size: d.Size}
	}
	defer s.hold(keys...)()
	st.setLayers(progress)

	// A failed layer stops the layers not yet started, but those already downloading
	// finish: their verified blobs and snapshots make the next attempt shorter.
	var g errgroup.Group
	g.SetLimit(s.opts.downloads)
	var failed atomic.Bool
	for i := range layers {
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			err := s.fetchLayer(ctx, layers[i], &rec.Layers[i], open, i, st)
			if err != nil {
				failed.Store(true)
			}
			if err != nil {
				st.set(func(p *Progress) { p.Layers[i].Status, p.Layers[i].Error = LayerFailed, err.Error() })
				return fmt.Errorf("layer %s: %w", rec.Layers[i].Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.blobs.put(manifest.Config.Digest, rawConfig); err != nil {
		return nil, storeError(err)
	}
	if err := s.blobs.put(digest, rawManifest); err != nil {
		return nil, storeError(err)
	}
	// The image is recorded before its files are surely on disk; the syncer flushes them
	// in a moment (durable.go).
	if err := s.commit(rec, names); err != nil {
		return nil, err
	}
	s.stored()
	return rec, nil
}

// readConfig fetches an image's config blob, trying again after transient failures.
// (The image's RawConfigFile would keep a config cut short by a dropped connection.)
func (s *Store) readConfig(ctx context.Context, img v1.Image, d v1.Hash) ([]byte, error) {
	var raw []byte
	err := s.retry(ctx, "config "+d.String(), func() error {
		l, err := partial.ConfigLayer(img)
		if err != nil {
			return registryError(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return registryError(err)
		}
		defer rc.Close()
		raw, err = io.ReadAll(io.LimitReader(rc, maxMetadata))
		if err != nil {
			return s.streamError(err)
		}
		return nil
	})
	return raw, err
}

// commit records an ingested image and its names.
func (s *Store) commit(rec *imageRecord, names []*refRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unsynced := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		var have imageRecord
		if err := getJSON(bucket(tx, bucketManifests), rec.Digest.String(), &have); err == nil && have.Unsynced == "" {
			// Pulled again: what it holds was flushed already.
			rec.Unsynced = ""
		} else {
			rec.Unsynced, unsynced = s.boot, true
		}
		if err := putJSON(bucket(tx, bucketManifests), rec.Digest.String(), rec); err != nil {
			return err
		}
		for _, l := range rec.Layers {
			if err := putJSON(bucket(tx, bucketSnapshots), l.ChainID.String(), snapshotRecord{Size: l.Unpacked}); err != nil {
				return err
			}
		}
		for _, n := range names {
			n.Image = rec.Digest
			if n.Target == (v1.Hash{}) {
				n.Target = rec.Digest
			}
			if err := putJSON(bucket(tx, bucketRefs), n.Name, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && unsynced {
		s.gen++
		s.pending[rec.Digest] = s.gen
	}
	return storeError(err)
}

// storeError marks a local write failure as no-space where that is the cause.
func storeError(err error) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) {
		return errdefs.NoSpace(err)
	}
	return err
}

// fetchLayer makes sure layer i's blob and snapshot are in the store. Concurrent fetches
// of one layer (by two pulls) wait for the first rather than download twice.
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, lr *layerRecord, open blobOpener, i int, st *pullState) error {
	for {
		s.mu.Lock()
		if f := s.inflight[lr.ChainID]; f != nil {
			s.mu.Unlock()
			select {
			case <-f.done:
				continue // look again: the other fetch may have failed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		f := &flight{done: make(chan struct{})}
		s.inflight[lr.ChainID] = f
		s.mu.Unlock()

		err := s.fetchLayerOnce(ctx, l, lr, open, i, st)

		s.mu.Lock()
		delete(s.inflight, lr.ChainID)
		s.mu.Unlock()
		close(f.done)
		return err
	}
}

func (s *Store) fetchLayerOnce(ctx context.Context, l v1.Layer, lr *layerRecord, open blobOpener, i int, st *pullState) error {
	haveBlob, haveSnap := s.blobs.has(lr.Digest), s.snaps.has(lr.ChainID)
	if haveSnap {
		size, err := s.snapshotSize(lr.ChainID)
		if err != nil {
			return err
		}
		lr.Unpacked = size
	}
	switch {
	case haveBlob && haveSnap:
		st.layerBytes(i, lr.Size)
		st.layer(i, LayerExists)
		return nil
	case haveBlob:
		st.layer(i, LayerUnpacking)
		f, err := s.blobs.open(lr.Digest)
		if err != nil {
			return err
		}
		defer f.Close()
		cr := &countingReader{r: f, fn: func(n int64) { st.layerBytes(i, n) }}
		if err := s.unpackInto(ctx, cr, lr); err != nil {
			return err
		}
		st.layer(i, LayerDone)
		return nil
	}
	st.layer(i, LayerDownloading)
	progress := func(n int64) { st.layerBytes(i, n) }
	onRetry := func(error) { st.layer(i, LayerRetrying) }
	onResume := func() { st.layer(i, LayerDownloading) }
	if err := s.download(ctx, l, lr, !haveSnap, open, progress, onRetry, onResume); err != nil {
		return err
	}
	st.layer(i, LayerDone)
	return nil
}

// unreachable tells whether err says that no registry listens at the address, or the
// name does not resolve.
func unreachable(err error) bool {
	msg := err.Error()
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host")
}

// retry runs fn until it succeeds, fails in a way trying again cannot mend, or has been
// tried 1+retries times, waiting the store's backoff (doubled each time) in between.
func (s *Store) retry(ctx context.Context, what string, fn func() error) error {
	backoff := s.opts.backoff
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) {
			return err
		}
		if attempt >= s.opts.retries {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
		}
		s.log.Warn("registry request failed; retrying", "what", what, "attempt", attempt+1, "wait", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff *= 2
	}
}

// download streams layer l: into the content store and, when unpack is set, through the
// decompressor into a new snapshot at the same time. With an opener, a download cut short
// resumes where it stopped (the unpacking goes on undisturbed); without one, the layer is
// read once from l (an archive being loaded).
func (s *Store) download(ctx context.Context, l v1.Layer, lr *layerRecord, unpack bool, open blobOpener,
	progress func(int64), onRetry func(error), onResume func()) error {
	var rc io.ReadCloser
	if open != nil {
		rc = &resumingReader{ctx: ctx, s: s, open: open, digest: lr.Digest, onRetry: onRetry, onResume: onResume}
	} else {
		var err error
		if rc, err = l.Compressed(); err != nil {
			return registryError(err)
		}
	}
	defer rc.Close()
	w, err := s.blobs.writer(lr.Digest, lr.Size)
	if err != nil {
		return storeError(err)
	}
	defer w.Close()
	src := io.TeeReader(&countingReader{r: rc, fn: progress}, w)
	if unpack {
		err = s.unpackInto(ctx, src, lr)
	} else {
		_, err = io.Copy(io.Discard, src)
	}
	if err != nil && unpack && ctx.Err() == nil && !errors.Is(err, syscall.ENOSPC) {
		// Bad content shows first as a decompression or tar error. Read the rest to
		// learn whether the registry sent other bytes than the digest promises (then
		// that is the error) or the layer itself is malformed.
		if _, derr := io.Copy(io.Discard, src); derr != nil {
			return s.streamError(derr)
		}
		if verr := w.verify(); verr != nil {
			return errdefs.Unavailable(fmt.Errorf("%w: %w", errMismatch, verr))
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errMismatch) {
			err = errdefs.Invalid(fmt.Errorf("malformed layer: %w", err))
		}
	}
	if err != nil {
		return s.streamError(err)
	}
	if err := w.Commit(); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return errdefs.NoSpace(err)
		}
		return errdefs.Unavailable(fmt.Errorf("%w: %w", errMismatch, err))
	}
	return nil
}

// streamError classifies a failure while streaming a layer.
func (s *Store) streamError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return errdefs.NoSpace(err)
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, errMismatch):
		return err
	case strings.Contains(err.Error(), "error verifying"):
		// go-containerregistry's verifying reader: the registry sent other bytes.
		return errdefs.Unavailable(fmt.Errorf("%w: %w", errMismatch, err))
	}
	return registryError(err)
}

// unpackInto unpacks a layer stream into a new snapshot for lr's chain ID.
func (s *Store) unpackInto(ctx context.Context, r io.Reader, lr *layerRecord) error {
	tmp, err := s.snaps.temp()
	if err != nil {
		return storeError(err)
	}
	size, err := unpackLayer(ctx, r, lr.DiffID, tmp)
	if err != nil {
		fsutil.RemoveTree(tmp)
		if errors.Is(err, errMismatch) {
			err = errdefs.Unavailable(err)
		}
		return err
	}
	if err := s.snaps.commit(tmp, lr.ChainID); err != nil {
		fsutil.RemoveTree(tmp)
		return storeError(err)
	}
	lr.Unpacked = size
	return nil
}

// snapshotSize is the recorded unpacked size of a snapshot, measured again if the
// record is missing (a snapshot committed just before a crash).
func (s *Store) snapshotSize(chain v1.Hash) (int64, error) {
	var rec snapshotRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(bucket(tx, bucketSnapshots), chain.String(), &rec)
	})
	if err == nil {
		return rec.Size, nil
	}
	if !errors.Is(err, errNoRecord) {
		return 0, err
	}
	var size int64
	err = filepath.WalkDir(s.snaps.path(chain), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	return size, err
}

// Remote resolves ref as pulls do (Docker's defaults, plain HTTP where the store allows
// it) and returns it with the store's registry options (credentials, transport, retries),
// for other artifacts than images: the vm runtime's kernels.
func (s *Store) Remote(ctx context.Context, ref string) (name.Reference, []remote.Option, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	return s.remoteRef(r).named, s.baseRemoteOptions(ctx), nil
}

package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// Store is the image store of one data root.
type Store struct {
	root  string
	db    *bolt.DB
	opts  options
	blobs blobs
	snaps snapshots
	log   *slog.Logger

	// mu serialises changes to the index with garbage collection.
	mu sync.Mutex
	// held counts, by digest or chain ID, the blobs and snapshots that operations in
	// flight rely on before they are recorded; garbage collection leaves them alone.
	held map[v1.Hash]int
	// inflight makes concurrent fetches of one layer wait for the first.
	inflight  map[v1.Hash]*flight
	pulls     map[*pullState]struct{}
	driver    string
	transport *registryTransport
	syncer    *syncer
	boot      string
	// gen counts commits; pending holds the commit number of each image not yet
	// flushed (durable.go). Both under mu.
	gen     uint64
	pending map[v1.Hash]uint64
	// viewMu serialises the mounting of views (view.go); mountMu that of containers'
	// root filesystems.
	viewMu, mountMu sync.Mutex
}

type flight struct {
	done chan struct{}
}

type options struct {
	insecure  []string
	downloads int
	keychain  authn.Keychain
	driver    string
	logger    *slog.Logger
	retries   int
	backoff   time.Duration
	platform  *v1.Platform
	syncDelay time.Duration
	boot      string
}

// Option configures a Store.
type Option func(*options)

// WithInsecureRegistries allows plain HTTP (and unverified TLS) for these registry hosts
// ("host" or "host:port"). Loopback registries are always allowed.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) { o.insecure = append(o.insecure, hosts...) }
}

// WithMaxConcurrentDownloads limits how many layers of one pull download at once.
func WithMaxConcurrentDownloads(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.downloads = n
		}
	}
}

// WithKeychain sets where registry credentials come from (default: the Docker config of
// the user running the daemon).
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) { o.keychain = k }
}

// WithDriver chooses how container root filesystems are made: "overlay", "copy", or ""
// to use overlay where the data root supports it and copy elsewhere.
func WithDriver(d string) Option {
	return func(o *options) { o.driver = d }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRetry sets how often a failed layer download is tried again, and the first wait
// (doubled after each failure).
func WithRetry(retries int, backoff time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = retries, backoff }
}

// WithDefaultPlatform sets the platform pulled from a multi-platform image when the pull
// names none (default: the host's).
func WithDefaultPlatform(p v1.Platform) Option {
	return func(o *options) { o.platform = &p }
}

// Open opens the image store rooted at root, keeping its index in db.
func Open(ctx context.Context, root string, db *bolt.DB, opts ...Option) (*Store, error) {
	o := options{downloads: 3, keychain: authn.DefaultKeychain, logger: slog.Default(), retries: 4,
		backoff: 500 * time.Millisecond, syncDelay: time.Second, boot: bootID()}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Store{
		root:      root,
		db:        db,
		opts:      o,
		log:       o.logger,
		blobs:     blobs{dir: filepath.Join(root, "blobs", "sha256"), ingest: filepath.Join(root, "ingest")},
		snaps:     snapshots{dir: filepath.Join(root, "snapshots"), ingest: filepath.Join(root, "ingest")},
		held:      map[v1.Hash]int{},
		inflight:  map[v1.Hash]*flight{},
		pulls:     map[*pullState]struct{}{},
		transport: newRegistryTransport(o.insecure),
		boot:      o.boot,
		pending:   map[v1.Hash]uint64{},
	}
	// Whatever is in ingest/ was left by a run that stopped mid-way: it was never visible.
	if err := fsutil.RemoveTree(filepath.Join(root, "ingest")); err != nil {
		return nil, fmt.Errorf("clean %s: %w", filepath.Join(root, "ingest"), err)
	}
	// Owner only, whatever the data root's mode: see engine/store.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, err
	}
	// Views are mounted only while the daemon runs: a crashed run's go.
	s.dropViews(nil)
	for _, d := range []string{s.blobs.dir, s.snaps.dir, s.blobs.ingest, s.rootfsDir(), s.viewsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := initIndex(db); err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	driver, err := s.chooseDriver(ctx, o.driver)
	if err != nil {
		return nil, err
	}
	s.driver = driver
	if err := s.recoverUnsynced(ctx); err != nil {
		return nil, err
	}
	s.startSyncer(o.syncDelay)
	return s, nil
}

// Blob returns a small stored blob (a manifest, a config) by its digest.
func (s *Store) Blob(digest string) ([]byte, error) {
	d, err := v1.NewHash(digest)
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("invalid digest %q: %w", digest, err))
	}
	data, err := s.blobs.read(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound(fmt.Errorf("no blob %s", digest))
	}
	return data, err
}

// Driver is how this store makes root filesystems: "overlay" or "copy".
func (s *Store) Driver() string { return s.driver }

// Root is the directory the store keeps its files in.
func (s *Store) Root() string { return s.root }

// hostPlatform is the platform this binary runs on, as image indexes name it.
func (s *Store) hostPlatform() v1.Platform {
	if s.opts.platform != nil {
		return *s.opts.platform
	}
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.OS == "darwin" {
		p.OS = "linux" // images for containers are Linux images, whatever the host
	}
	if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// hold marks blobs and snapshots as needed by an operation in flight. The returned
// function releases them.
func (s *Store) hold(keys ...v1.Hash) func() {
	s.mu.Lock()
	for _, k := range keys {
		s.held[k]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		for _, k := range keys {
			if s.held[k]--; s.held[k] <= 0 {
				delete(s.held, k)
			}
		}
		s.mu.Unlock()
	}
}

// Image is what the store knows of one image.
type Image struct {
	// ID is the digest of the image's config, as Docker shows it.
	ID string `json:"id"`
	// Digest is the digest of the image's manifest.
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Names are the canonical references that name the image: tags and digests.
	Names []string `json:"names"`
	// RepoDigests are repository@digest of what the registry resolved each name to (for a
	// multi-platform image, the index).
	RepoDigests []string `json:"repoDigests"`
	Platform    string   `json:"platform"`
	// Platforms are all the platforms stored under the image's names when one of them
	// is multi-platform (this image's first); PlatformOf names the multi-platform names
	// of which this image is another platform's.
	Platforms  []string          `json:"platforms,omitempty"`
	PlatformOf []string          `json:"platformOf,omitempty"`
	Created    time.Time         `json:"created"`
	Size       int64             `json:"size"`
	Layers     []Layer           `json:"layers"`
	Config     *v1.ConfigFile    `json:"config,omitempty"`
	UsedBy     []string          `json:"usedBy,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// Layer is one layer of an image.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	ChainID   string `json:"chainID"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Unpacked  int64  `json:"unpacked"`
}

func (r *imageRecord) view(refs []*refRecord, users []string) *Image {
	im := &Image{
		ID:        r.Config.String(),
		Digest:    r.Digest.String(),
		MediaType: string(r.MediaType),
		Platform:  platformString(r.Platform),
		Created:   r.Created,
		UsedBy:    users,
		Names:     []string{},
	}
	seen := map[string]bool{}
	for _, ref := range refs {
		im.Names = append(im.Names, ref.Name)
		if parsed, err := ParseReference(ref.Name); err == nil {
			rd := parsed.Repository() + "@" + ref.Target.String()
			if !seen[rd] {
				seen[rd] = true
				im.RepoDigests = append(im.RepoDigests, rd)
			}
		}
	}
	for _, l := range r.Layers {
		im.Size += l.Unpacked
		im.Layers = append(im.Layers, Layer{
			Digest: l.Digest.String(), DiffID: l.DiffID.String(), ChainID: l.ChainID.String(),
			MediaType: string(l.MediaType), Size: l.Size, Unpacked: l.Unpacked,
		})
	}
	return im
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// index is a consistent read of the whole index.
type index struct {
	refs   map[v1.Hash][]*refRecord
	images map[v1.Hash]*imageRecord
	users  map[v1.Hash][]string
	// members are, by image, the names that hold it as another platform's image.
	members map[v1.Hash][]*refRecord
}

func readIndex(tx *bolt.Tx) (*index, error) {
	ix := &index{refs: map[v1.Hash][]*refRecord{}, images: map[v1.Hash]*imageRecord{}, users: map[v1.Hash][]string{}, members: map[v1.Hash][]*refRecord{}}
	if err := forEach(bucket(tx, bucketRefs), func(_ string, r *refRecord) error {
		ix.refs[r.Image] = append(ix.refs[r.Image], r)
		for _, m := range r.Platforms {
			ix.members[m] = append(ix.members[m], r)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := forEach(bucket(tx, bucketManifests), func(_ string, r *imageRecord) error {
		ix.images[r.Digest] = r
		return nil
	}); err != nil {
		return nil, err
	}
	if err := forEach(bucket(tx, bucketRootfs), func(_ string, r *rootfsRecord) error {
		ix.users[r.Image] = append(ix.users[r.Image], r.Owner)
		return nil
	}); err != nil {
		return nil, err
	}
	return ix, nil
}

func (ix *index) view(d v1.Hash) *Image {
	im := ix.images[d].view(ix.refs[d], ix.users[d])
	seen := map[string]bool{}
	for _, r := range ix.refs[d] {
		for _, m := range r.Platforms {
			if rec, ok := ix.images[m]; ok {
				if len(im.Platforms) == 0 {
					im.Platforms, seen[im.Platform] = []string{im.Platform}, true
				}
				if p := platformString(rec.Platform); !seen[p] {
					seen[p] = true
					im.Platforms = append(im.Platforms, p)
				}
			}
		}
	}
	for _, r := range ix.members[d] {
		im.PlatformOf = append(im.PlatformOf, r.Name)
	}
	return im
}

// held tells whether image d is kept by something other than its own names: a name
// that holds it as another platform's image, or a container.
func (ix *index) held(d v1.Hash) bool { return len(ix.members[d]) > 0 || len(ix.users[d]) > 0 }

// List returns every image, newest first.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	var out []*Image
	err := s.db.View(func(tx *bolt.Tx) error {
		ix, err := readIndex(tx)
		if err != nil {
			return err
		}
		for d := range ix.images {
			out = append(out, ix.view(d))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// Get returns the image that arg names: a reference, an image ID or manifest digest, or
// an unambiguous prefix of either (at least four hex digits). The result includes the
// parsed config.
func (s *Store) Get(ctx context.Context, arg string) (*Image, error) {
	var im *Image
	var cfgDigest v1.Hash
	err := s.db.View(func(tx *bolt.Tx) error {
		ix, rec, _, err := resolveIn(tx, arg)
		if err != nil {
			return err
		}
		im = ix.view(rec.Digest)
		cfgDigest = rec.Config
		return nil
	})
	if err != nil {
		return nil, err
	}
	raw, err := s.blobs.read(cfgDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", arg, err)
	}
	if im.Config, err = v1.ParseConfigFile(strings.NewReader(string(raw))); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", arg, err)
	}
	im.Labels = im.Config.Config.Labels
	return im, nil
}

var hexPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`)

// resolve finds the image arg names. ref is the matching name record when arg is a name.
func (ix *index) resolve(arg string) (*imageRecord, *refRecord, error) {
	if ref, err := ParseReference(arg); err == nil {
		for _, refs := range ix.refs {
			for _, r := range refs {
				if r.Name == ref.String() {
					return ix.images[r.Image], r, nil
				}
			}
		}
	}
	if hexPrefix.MatchString(arg) {
		want := strings.TrimPrefix(arg, "sha256:")
		var found []*imageRecord
		for _, rec := range ix.images {
			if strings.HasPrefix(rec.Config.Hex, want) || strings.HasPrefix(rec.Digest.Hex, want) {
				found = append(found, rec)
			}
		}
		if len(found) == 1 {
			return found[0], nil, nil
		}
		if len(found) > 1 {
			return nil, nil, errdefs.Invalid(fmt.Errorf("image ID prefix %q is ambiguous: %d images match", arg, len(found)))
		}
	}
	return nil, nil, errdefs.NotFound(fmt.Errorf("no such image: %s", arg))
}

// resolveIn reads the index in tx and finds the image arg names.
func resolveIn(tx *bolt.Tx, arg string) (*index, *imageRecord, *refRecord, error) {
	ix, err := readIndex(tx)
	if err != nil {
		return nil, nil, nil, err
	}
	rec, ref, err := ix.resolve(arg)
	return ix, rec, ref, err
}

// Tag points the name target at the image source names. A name that pointed elsewhere is
// moved, as docker tag does.
func (s *Store) Tag(ctx context.Context, source, target string) error {
	ref, err := ParseTag(target)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		_, rec, from, err := resolveIn(tx, source)
		if err != nil {
			return err
		}
		r := &refRecord{Name: ref.String(), Image: rec.Digest, Target: rec.Digest, Added: time.Now().UTC()}
		if from != nil && from.Target != (v1.Hash{}) {
			r.Target, r.Platforms = from.Target, from.Platforms
		}
		return putJSON(bucket(tx, bucketRefs), r.Name, r)
	})
}

// Deleted reports what a Delete did, in the words docker rmi uses.
type Deleted struct {
	Untagged []string `json:"untagged,omitempty"`
	Deleted  []string `json:"deleted,omitempty"`
}

// Delete removes a name, or an image with all its names. An image goes away with its
// last name unless a container uses it: then removing that last name is refused, or with
// force the name goes and the image stays until the container is removed. Deleting an
// image by ID that has several names needs force. Blobs and snapshots no other image
// uses are removed.
func (s *Store) Delete(ctx context.Context, arg string, force bool) (*Deleted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Deleted{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ix, rec, ref, err := resolveIn(tx, arg)
		if err != nil {
			return err
		}
		refs := ix.refs[rec.Digest]
		users := ix.users[rec.Digest]
		byName := ref != nil
		switch {
		case byName && len(refs) > 1:
			// Only the name goes; the image keeps its other names.
			refs = []*refRecord{ref}
		case len(users) > 0 && !force:
			return errdefs.Conflict(fmt.Errorf("image %s is in use by container %s", arg, strings.Join(users, ", ")))
		case !byName && len(refs) == 0 && len(ix.members[rec.Digest]) > 0 && !force:
			names := make([]string, len(ix.members[rec.Digest]))
			for i, r := range ix.members[rec.Digest] {
				names[i] = FamiliarName(r.Name)
			}
			return errdefs.Conflict(fmt.Errorf("image %s is the %s image of %s: remove that, or force", arg, platformString(rec.Platform), strings.Join(names, ", ")))
		case !byName && len(refs) > 1 && !force:
			names := make([]string, len(refs))
			for i, r := range refs {
				names[i] = FamiliarName(r.Name)
			}
			return errdefs.Conflict(fmt.Errorf("image %s has several names (%s): remove them by name, or force", arg, strings.Join(names, ", ")))
		}
		for _, r := range refs {
			if err := bucket(tx, bucketRefs).Delete([]byte(r.Name)); err != nil {
				return err
			}
			out.Untagged = append(out.Untagged, r.Name)
		}
		if !byName && force {
			// Forced out of the names that hold it as another platform's image.
			for _, r := range ix.members[rec.Digest] {
				r.Platforms = slices.DeleteFunc(slices.Clone(r.Platforms), func(m v1.Hash) bool { return m == rec.Digest })
				if err := putJSON(bucket(tx, bucketRefs), r.Name, r); err != nil {
					return err
				}
			}
			delete(ix.members, rec.Digest)
		}
		if len(refs) == len(ix.refs[rec.Digest]) && len(users) == 0 && len(ix.members[rec.Digest]) == 0 {
			if err := bucket(tx, bucketManifests).Delete([]byte(rec.Digest.String())); err != nil {
				return err
			}
			out.Deleted = append(out.Deleted, rec.Config.String())
		}
		// The other platforms' images of the names removed go with the last name that
		// holds them, unless they have names of their own or a container uses them.
		gone := map[*refRecord]bool{}
		for _, r := range refs {
			gone[r] = true
		}
		for _, r := range refs {
			for _, m := range r.Platforms {
				mrec, ok := ix.images[m]
				if !ok || len(ix.refs[m]) > 0 || len(ix.users[m]) > 0 || slices.ContainsFunc(ix.members[m], func(o *refRecord) bool { return !gone[o] }) {
					continue
				}
				if err := bucket(tx, bucketManifests).Delete([]byte(m.String())); err != nil {
					return err
				}
				delete(ix.images, m)
				out.Deleted = append(out.Deleted, mrec.Config.String())
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out.Deleted) > 0 {
		s.collect(ctx)
	}
	return out, nil
}

// Prune removes images that have no name and no container using them (another
// platform's image of a multi-platform name has its name's).
func (s *Store) Prune(ctx context.Context) (*Deleted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Deleted{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ix, err := readIndex(tx)
		if err != nil {
			return err
		}
		for d, rec := range ix.images {
			if len(ix.refs[d]) == 0 && !ix.held(d) && s.held[d] == 0 {
				if err := bucket(tx, bucketManifests).Delete([]byte(d.String())); err != nil {
					return err
				}
				out.Deleted = append(out.Deleted, rec.Config.String())
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.collect(ctx)
	return out, nil
}

// collect removes blobs and snapshots that no image refers to and no operation in flight
// holds. The caller holds s.mu. Failures are logged: what is left is collected next time.
func (s *Store) collect(ctx context.Context) {
	liveBlobs := map[v1.Hash]bool{}
	liveSnaps := map[v1.Hash]bool{}
	liveImages := map[v1.Hash]bool{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := forEach(bucket(tx, bucketManifests), func(_ string, r *imageRecord) error {
			liveImages[r.Digest] = true
			liveBlobs[r.Digest], liveBlobs[r.Config] = true, true
			for _, l := range r.Layers {
				liveBlobs[l.Digest], liveSnaps[l.ChainID] = true, true
			}
			return nil
		}); err != nil {
			return err
		}
		var dead [][]byte
		b := bucket(tx, bucketSnapshots)
		b.ForEach(func(k, _ []byte) error {
			if h, err := v1.NewHash(string(k)); err == nil && !liveSnaps[h] && s.held[h] == 0 {
				dead = append(dead, slices.Clone(k))
			}
			return nil
		})
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("image garbage collection", "err", err)
		return
	}
	s.dropViews(liveImages)
	if all, err := s.blobs.list(); err == nil {
		for _, d := range all {
			if !liveBlobs[d] && s.held[d] == 0 {
				if err := s.blobs.remove(d); err != nil {
					s.log.Warn("remove blob", "digest", d, "err", err)
				}
			}
		}
	}
	if all, err := s.snaps.list(); err == nil {
		for _, c := range all {
			if !liveSnaps[c] && s.held[c] == 0 {
				if err := s.snaps.remove(c); err != nil {
					s.log.Warn("remove snapshot", "chain", c, "err", err)
				}
			}
		}
	}
}

// Usage is what the store holds on disk.
type Usage struct {
	Images    int `json:"images"`
	Blobs     int `json:"blobs"`
	Snapshots int `json:"snapshots"`
}

// Usage counts images, blobs and snapshots.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := s.db.View(func(tx *bolt.Tx) error {
		u.Images = bucket(tx, bucketManifests).Stats().KeyN
		return nil
	})
	if b, e := s.blobs.list(); e == nil {
		u.Blobs = len(b)
	}
	if sn, e := s.snaps.list(); e == nil {
		u.Snapshots = len(sn)
	}
	return u, err
}

package images

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
)

// Durability. A pull writes hundreds of megabytes; waiting for the disk to take them all
// before answering would double its time. So ingest does not wait: each image is
// recorded with the boot ID of the machine it was stored on (imageRecord.Unsynced), and
// a syncer flushes the filesystem shortly after and clears the mark. (Asking the kernel to
// start writeback of each file as it completes, with sync_file_range, made pulls slower,
// not faster: it blocks once the disk's queue is full.)
//
// What Open does with images still marked:
//   - same boot (the daemon stopped or crashed, the machine did not): the page cache
//     still holds their data, so one flush makes them durable;
//   - earlier boot (the machine went down before they reached the disk): their files may
//     be empty or torn, so they are removed, with every blob and snapshot that no durable
//     image uses, and the log says to pull them again.
//
// A durable image never relies on data that was not flushed before it was marked: its
// own mark is cleared only by a flush that began after it was recorded. An image pulled
// again while durable stays durable. An image containers use is kept even when it may be
// damaged (removing it would break them silently); the log says so.

var (
	bucketMeta = []byte("meta")
	keyBoot    = []byte("boot")
)

// syncer flushes the store's filesystem a moment after images are stored.
type syncer struct {
	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

func (s *Store) startSyncer(delay time.Duration) {
	s.syncer = &syncer{kick: make(chan struct{}, 1), stop: make(chan struct{})}
	s.syncer.wg.Go(func() {
		for {
			select {
			case <-s.syncer.kick:
			case <-s.syncer.stop:
				return
			}
			// Let pulls that finish close together share one flush.
			select {
			case <-time.After(delay):
			case <-s.syncer.stop:
				return // Close flushes
			}
			if err := s.flush(); err != nil {
				s.log.Error("flush stored images to disk", "err", err)
			}
		}
	})
}

// stored tells the syncer that an image was recorded unsynced.
func (s *Store) stored() {
	select {
	case s.syncer.kick <- struct{}{}:
	default:
	}
}

// flush writes everything the store holds to disk, then marks durable the images that
// were committed before it began. Commits are counted (s.gen), not timed: an image
// committed while the flush runs waits for the next one.
func (s *Store) flush() error {
	s.mu.Lock()
	upto, pending := s.gen, len(s.pending) > 0
	s.mu.Unlock()
	if !pending {
		return nil // syncfs would write out the whole filesystem for nothing
	}
	if err := syncFS(s.root); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketManifests)
		for d, gen := range s.pending {
			if gen > upto {
				continue
			}
			delete(s.pending, d)
			var r imageRecord
			if err := getJSON(b, d.String(), &r); err != nil {
				continue // removed meanwhile
			}
			r.Unsynced = ""
			if err := putJSON(b, d.String(), &r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close stops the syncer and flushes what is not yet on disk.
func (s *Store) Close() error {
	close(s.syncer.stop)
	s.syncer.wg.Wait()
	s.dropViews(nil)
	return s.flush()
}

// recoverUnsynced deals with images a previous run left unflushed, as described above.
func (s *Store) recoverUnsynced(ctx context.Context) error {
	var lost []*imageRecord
	rebooted := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.Bucket(bucketImages).CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		rebooted = string(meta.Get(keyBoot)) != s.boot
		if err := meta.Put(keyBoot, []byte(s.boot)); err != nil {
			return err
		}
		leased := map[v1.Hash][]string{}
		if err := forEach(bucket(tx, bucketRootfs), func(_ string, r *rootfsRecord) error {
			leased[r.Image] = append(leased[r.Image], r.Owner)
			return nil
		}); err != nil {
			return err
		}
		b := bucket(tx, bucketManifests)
		var kept []*imageRecord
		if err := forEach(b, func(_ string, r *imageRecord) error {
			switch {
			case r.Unsynced == "":
			case r.Unsynced == s.boot:
				s.pending[r.Digest] = 0
			case len(leased[r.Digest]) > 0:
				// Containers are built on it: keep it, and say it may be damaged.
				s.log.Error("image was not on disk when the machine went down, and containers use it: it may be damaged",
					"image", r.Digest, "containers", strings.Join(leased[r.Digest], ","))
				r.Unsynced = ""
				kept = append(kept, r)
			default:
				lost = append(lost, r)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range kept {
			if err := putJSON(b, r.Digest.String(), r); err != nil {
				return err
			}
		}
		for _, r := range lost {
			if err := b.Delete([]byte(r.Digest.String())); err != nil {
				return err
			}
			refs := bucket(tx, bucketRefs)
			var names [][]byte
			var held []*refRecord
			forEach(refs, func(k string, ref *refRecord) error {
				if ref.Image == r.Digest {
					names = append(names, []byte(k))
				} else if slices.Contains(ref.Platforms, r.Digest) {
					// A multi-platform name keeps its other platforms that are left.
					ref.Platforms = slices.DeleteFunc(ref.Platforms, func(d v1.Hash) bool { return d == r.Digest })
					held = append(held, ref)
				}
				return nil
			})
			for _, k := range names {
				if err := refs.Delete(k); err != nil {
					return err
				}
			}
			for _, ref := range held {
				if err := putJSON(refs, ref.Name, ref); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover unflushed images: %w", err)
	}
	for _, r := range lost {
		s.log.Warn("image removed: the machine went down before it was on disk; pull it again", "image", r.Digest, "id", r.Config)
	}
	if rebooted {
		// Blobs and snapshots no image records were written before the machine went
		// down, by pulls that did not finish: they may be torn.
		s.mu.Lock()
		s.collect(ctx)
		s.mu.Unlock()
	}
	return s.flush()
}

// withBootID and withSyncDelay let tests play a machine that reboots, and a syncer that
// has not run yet.
func withBootID(id string) Option          { return func(o *options) { o.boot = id } }
func withSyncDelay(d time.Duration) Option { return func(o *options) { o.syncDelay = d } }

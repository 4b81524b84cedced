package volumes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

// DriverLocal is the only volume driver: a directory under the store's root.
const DriverLocal = "local"

// maxNameLen is the longest volume name: a directory name must fit in NAME_MAX.
const maxNameLen = 255

// bucketVolumes is the top bucket of the records: volume name -> Volume as JSON.
var bucketVolumes = []byte("volumes")

// localOpts are the local driver's options, as Docker's: a filesystem to mount as the
// volume's data (mount -t <type> -o <o> <device>).
var localOpts = []string{"type", "device", "o"}

// Volume is a named volume.
type Volume struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Mountpoint string            `json:"mountpoint"` // <root>/<name>/_data, the data
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
	// Anonymous volumes are made for `-v /path` and an image's VOLUME entries; their name
	// is 64 random hex digits.
	Anonymous bool `json:"anonymous,omitempty"`
}

// CreateOptions are the optional settings of a new volume.
type CreateOptions struct {
	Driver     string            // "" or "local"
	Labels     map[string]string // stored as they are
	DriverOpts map[string]string // local driver: "type", "device", "o", stored as they are
	Anonymous  bool              // marks the volume as made for a container, not by name
}

// Store holds the volumes of one data root.
type Store struct {
	root string
	db   *bolt.DB
	// mu serialises Create and Remove, so that two creates of one name make one volume and
	// a remove never races a create of the same directory.
	mu sync.Mutex
}

// Open opens the store whose data lives under root and whose records live in db, in the
// top bucket "volumes". The caller owns db and closes it. Open removes the leftovers of a
// create or remove interrupted by a crash.
func Open(root string, db *bolt.DB) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create volume root: %w", err)
	}
	// Owner only, whatever the data root's mode: see engine/store.
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("volume root: %w", err)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketVolumes)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("volume records: %w", err)
	}
	s := &Store{root: root, db: db}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("recover volumes: %w", err)
	}
	return s, nil
}

// recover brings the directories in line with the records. A directory without a record
// is a create or a remove that did not finish, and goes. A record without a data directory
// is a create whose directories had not reached the disk when the host went down, and gets
// an empty one.
func (s *Store) recover() error {
	names := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVolumes).ForEach(func(k, _ []byte) error {
			names[string(k)] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if names[e.Name()] || e.Name() == lostDir {
			continue
		}
		// A directory without a record is a create that a crash cut short, whose data is
		// empty; one that holds data (a database restored from an older copy, say) is
		// kept aside in .lost, never deleted.
		dir := filepath.Join(s.root, e.Name())
		if empty, _ := isEmptyDir(filepath.Join(dir, "_data")); empty {
			if err := fsutil.RemoveTree(dir); err != nil {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
			continue
		}
		lost := filepath.Join(s.root, lostDir)
		if err := os.MkdirAll(lost, 0o700); err != nil {
			return err
		}
		if err := os.Rename(dir, filepath.Join(lost, fmt.Sprintf("%s-%d", e.Name(), time.Now().Unix()))); err != nil {
			return fmt.Errorf("keep aside %s: %w", e.Name(), err)
		}
	}
	for name := range names {
		if err := s.makeDirs(name); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
	}
	return nil
}

// lostDir holds, under the store's root, the data of volumes that had no record.
const lostDir = ".lost"

// isEmptyDir tells whether dir holds nothing (a missing dir is empty).
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if os.IsNotExist(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err != nil, nil
}

// Create makes volume name, or a volume with a random 64-hex-digit name when name is "".
// An existing volume of that name is returned as it is, with created false, when its
// driver matches (Docker's `volume create` is idempotent); with another driver the error
// is errdefs.Conflict.
func (s *Store) Create(ctx context.Context, name string, opts CreateOptions) (*Volume, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if name == "" {
		name = randomName()
	} else if err := ValidName(name); err != nil {
		return nil, false, err
	}
	driver, err := checkOptions(opts)
	if err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", name, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.Get(name)
	switch {
	case err == nil && old.Driver == driver:
		return old, false, nil
	case err == nil:
		return nil, false, errdefs.Conflict(fmt.Errorf("volume %s already exists with driver %s", name, old.Driver))
	case !errors.Is(err, errdefs.ErrNotFound):
		return nil, false, err
	}
	v := &Volume{
		Name:       name,
		Driver:     driver,
		Mountpoint: s.dataDir(name),
		Labels:     cloneMap(opts.Labels),
		Options:    cloneMap(opts.DriverOpts),
		CreatedAt:  time.Now().UTC().Round(0), // no monotonic reading: equal to what Get reads back
		Anonymous:  opts.Anonymous,
	}
	if err := s.create(v); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	return v, true, nil
}

// checkOptions returns the driver opts asks for, or an errdefs.Invalid error.
func checkOptions(opts CreateOptions) (string, error) {
	if opts.Driver != "" && opts.Driver != DriverLocal {
		return "", errdefs.Invalid(fmt.Errorf("volume driver %q is not supported (only %q)", opts.Driver, DriverLocal))
	}
	for _, key := range slices.Sorted(maps.Keys(opts.DriverOpts)) {
		if !slices.Contains(localOpts, key) {
			return "", errdefs.Invalid(fmt.Errorf("invalid option %q for the %s driver (valid: %s)", key, DriverLocal, strings.Join(localOpts, ", ")))
		}
	}
	if len(opts.DriverOpts) > 0 {
		o := opts.DriverOpts
		if o["device"] == "" {
			return "", errdefs.Invalid(errors.New("the local driver's options need a device (device=tmpfs, device=/dev/sdb1, device=/srv/data with o=bind)"))
		}
		if o["type"] == "" && !slices.Contains(strings.Split(o["o"], ","), "bind") {
			return "", errdefs.Invalid(errors.New("the local driver's options need a type (type=tmpfs, type=ext4, type=nfs; type=none with o=bind)"))
		}
	}
	return DriverLocal, nil
}

// Mounted tells whether the data directory of v has a filesystem of its own mounted.
func Mounted(v *Volume) bool {
	mps, _ := fsutil.MountsUnder(v.Mountpoint)
	return slices.Contains(mps, v.Mountpoint)
}

// Mount mounts, on the data directory of volume name, the filesystem its options (the
// local driver's type, device and o, as mount -t TYPE -o O DEVICE takes them) name,
// unless it is mounted already. A volume without options is a plain directory: nothing
// to mount.
func (s *Store) Mount(ctx context.Context, name string) error {
	v, err := s.Get(name)
	if err != nil || len(v.Options) == 0 || Mounted(v) {
		return err
	}
	args := []string{}
	if t := v.Options["type"]; t != "" {
		args = append(args, "-t", t)
	}
	if o := v.Options["o"]; o != "" {
		args = append(args, "-o", o)
	}
	args = append(args, "--", v.Options["device"], v.Mountpoint)
	if out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mount volume %s (mount %s): %s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
	return nil
}

// Unmount unmounts what Mount mounted for volume name, if anything.
func (s *Store) Unmount(name string) error {
	v, err := s.Get(name)
	if err != nil || len(v.Options) == 0 {
		return err
	}
	if err := fsutil.UnmountAll(v.Mountpoint); err != nil {
		return fmt.Errorf("unmount volume %s: %w", name, err)
	}
	return nil
}

// create makes v's directories, then its record; on failure it leaves neither.
func (s *Store) create(v *Volume) error {
	dir := s.dir(v.Name)
	// There is no record, so whatever is there is left by a remove that failed half-way.
	if err := fsutil.RemoveTree(dir); err != nil {
		return err
	}
	if err := s.makeDirs(v.Name); err != nil {
		fsutil.RemoveTree(dir)
		return err
	}
	data, err := json.Marshal(v)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketVolumes).Put([]byte(v.Name), data)
		})
	}
	if err != nil {
		fsutil.RemoveTree(dir)
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

// makeDirs creates the directories of volume name, keeping those that exist.
func (s *Store) makeDirs(name string) error {
	if err := os.MkdirAll(s.dir(name), 0o700); err != nil {
		return err
	}
	err := os.Mkdir(s.dataDir(name), 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// Not narrowed by the umask: processes of any user in the container reach the data.
	return os.Chmod(s.dataDir(name), 0o755)
}

// Get returns volume name, or an errdefs.NotFound error "no such volume: NAME".
func (s *Store) Get(name string) (*Volume, error) {
	var v *Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketVolumes).Get([]byte(name))
		if data == nil {
			return notFound(name)
		}
		var err error
		v, err = s.decode(name, data)
		return err
	})
	return v, err
}

// List returns every volume, sorted by name.
func (s *Store) List() ([]*Volume, error) {
	var vols []*Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		// bbolt keeps keys in byte order, which is the order of names.
		return tx.Bucket(bucketVolumes).ForEach(func(k, data []byte) error {
			v, err := s.decode(string(k), data)
			if err != nil {
				return err
			}
			vols = append(vols, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return vols, nil
}

// decode reads the record of volume name.
func (s *Store) decode(name string, data []byte) (*Volume, error) {
	v := new(Volume)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("volume record %q: %w", name, err)
	}
	// Derived, not trusted from the record: the data root may have moved.
	v.Mountpoint = s.dataDir(name)
	return v, nil
}

// Remove deletes volume name and its data, or returns an errdefs.NotFound error. Whether
// containers use the volume is the caller's business.
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		if b.Get([]byte(name)) == nil {
			return notFound(name)
		}
		return b.Delete([]byte(name))
	})
	if errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	// The volume is gone once its record is: what a failure leaves here, Open removes.
	if err := fsutil.RemoveTree(s.dir(name)); err != nil {
		return fmt.Errorf("remove volume %s: data: %w", name, err)
	}
	return nil
}

// Empty tells whether the data directory of volume name is empty, so that the engine
// copies an image's content into a volume on its first use only.
func (s *Store) Empty(name string) (bool, error) {
	v, err := s.Get(name)
	if err != nil {
		return false, err
	}
	f, err := os.Open(v.Mountpoint)
	if err != nil {
		return false, fmt.Errorf("volume %s: %w", name, err)
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("volume %s: %w", name, err)
	}
	return false, nil
}

// ValidName returns an errdefs.Invalid error unless name is a valid volume name:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 255 bytes. Docker asks the same, and it keeps a
// name a single path element.
func ValidName(name string) error {
	if name == "" {
		return errdefs.Invalid(errors.New("invalid volume name: empty"))
	}
	if len(name) > maxNameLen {
		return errdefs.Invalid(fmt.Errorf("invalid volume name: %d bytes long, at most %d allowed", len(name), maxNameLen))
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i], i == 0) {
			msg := fmt.Sprintf("invalid volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed", name)
			if name[0] == '.' || name[0] == '/' || name[0] == '~' || name[i] == '/' {
				msg += "; a host path must be absolute"
			}
			return errdefs.Invalid(errors.New(msg))
		}
	}
	return nil
}

// nameByte tells whether c may appear in a volume name, at its start when first is set.
func nameByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '_' || c == '.' || c == '-':
		return !first
	}
	return false
}

func notFound(name string) error {
	return errdefs.NotFound(fmt.Errorf("no such volume: %s", name))
}

// randomName returns the name of an anonymous volume: 64 random hex digits, as Docker's.
func randomName() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func (s *Store) dir(name string) string     { return filepath.Join(s.root, name) }
func (s *Store) dataDir(name string) string { return filepath.Join(s.root, name, "_data") }

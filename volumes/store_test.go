package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

var ctx = context.Background()

// newStore opens a store and its database in a fresh directory; reopen opens them again.
func newStore(t *testing.T) (s *Store, reopen func() *Store) {
	t.Helper()
	dir := t.TempDir()
	var db *bolt.DB
	open := func() *Store {
		t.Helper()
		if db != nil {
			db.Close()
		}
		var err error
		db, err = bolt.Open(filepath.Join(dir, "test.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(filepath.Join(dir, "volumes"), db)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Cleanup(func() { db.Close() })
	return open(), open
}

func mustCreate(t *testing.T, s *Store, name string, opts CreateOptions) *Volume {
	t.Helper()
	v, created, err := s.Create(ctx, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatalf("create %s: not created", name)
	}
	return v
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCreateGetListRemove(t *testing.T) {
	s, _ := newStore(t)
	labels := map[string]string{"a": "b"}
	v := mustCreate(t, s, "data", CreateOptions{Labels: labels, DriverOpts: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}})
	labels["a"] = "changed"
	if v.Name != "data" || v.Driver != DriverLocal || v.Labels["a"] != "b" || v.Options["o"] != "size=1m" || v.Anonymous || v.CreatedAt.IsZero() {
		t.Fatalf("created %+v", v)
	}
	if want := filepath.Join(s.root, "data", "_data"); v.Mountpoint != want {
		t.Fatalf("mountpoint %s, want %s", v.Mountpoint, want)
	}
	if m := mode(t, s.root); m != 0o700 {
		t.Errorf("root mode %o", m)
	}
	if m := mode(t, s.dir("data")); m != 0o700 {
		t.Errorf("volume dir mode %o", m)
	}
	if m := mode(t, v.Mountpoint); m != 0o755 {
		t.Errorf("data mode %o", m)
	}

	got, err := s.Get("data")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(v)
	b, _ := json.Marshal(got)
	if string(a) != string(b) || !got.CreatedAt.Equal(v.CreatedAt) {
		t.Fatalf("get %s, created %s", b, a)
	}

	mustCreate(t, s, "b1", CreateOptions{})
	mustCreate(t, s, "a1", CreateOptions{})
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range list {
		names = append(names, v.Name)
	}
	if strings.Join(names, " ") != "a1 b1 data" {
		t.Fatalf("list %v", names)
	}

	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir("data")); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
	if _, err := s.Get("data"); !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "no such volume: data" {
		t.Fatalf("get after remove: %v", err)
	}
	if err := s.Remove(ctx, "data"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := s.Empty("data"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("empty after remove: %v", err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	s, _ := newStore(t)
	first := mustCreate(t, s, "v", CreateOptions{Labels: map[string]string{"x": "1"}})
	for _, driver := range []string{"", DriverLocal} {
		v, created, err := s.Create(ctx, "v", CreateOptions{Driver: driver, Labels: map[string]string{"x": "2"}})
		if err != nil || created {
			t.Fatalf("driver %q: created %v, err %v", driver, created, err)
		}
		if v.Labels["x"] != "1" || !v.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("existing volume changed: %+v", v)
		}
	}
}

func TestCreateConflictAndBadOptions(t *testing.T) {
	s, _ := newStore(t)
	// Only the local driver exists; a record of another is what an older or newer daemon
	// could have left.
	rec, _ := json.Marshal(Volume{Name: "nfs", Driver: "nfs"})
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketVolumes).Put([]byte("nfs"), rec) })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, "nfs", CreateOptions{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("create over another driver: %v", err)
	}
	if _, _, err := s.Create(ctx, "x", CreateOptions{Driver: "nfs"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("unknown driver: %v", err)
	}
	_, _, err = s.Create(ctx, "x", CreateOptions{DriverOpts: map[string]string{"type": "nfs", "size": "1g"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"size"`) {
		t.Fatalf("unknown option: %v", err)
	}
	for _, opts := range []map[string]string{
		{"type": "tmpfs"},               // no device
		{"device": "/dev/sdb1"},         // no type
		{"device": "/srv", "o": "ro"},   // no type, and no bind
		{"type": "", "device": "tmpfs"}, // an empty type
	} {
		if _, _, err := s.Create(ctx, "x", CreateOptions{DriverOpts: opts}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("options %v: %v; want them refused", opts, err)
		}
	}
	if _, _, err := s.Create(ctx, "bound", CreateOptions{DriverOpts: map[string]string{"device": "/srv", "o": "bind,ro"}}); err != nil {
		t.Errorf("a bind without a type: %v", err)
	}
	if _, err := os.Stat(s.dir("x")); !os.IsNotExist(err) {
		t.Fatalf("failed create left a directory: %v", err)
	}
}

func TestAnonymous(t *testing.T) {
	s, _ := newStore(t)
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	a := mustCreate(t, s, "", CreateOptions{Anonymous: true})
	b := mustCreate(t, s, "", CreateOptions{Anonymous: true})
	if !hex64.MatchString(a.Name) || !hex64.MatchString(b.Name) || a.Name == b.Name || !a.Anonymous {
		t.Fatalf("anonymous volumes %s %v, %s", a.Name, a.Anonymous, b.Name)
	}
	if got, err := s.Get(a.Name); err != nil || !got.Anonymous {
		t.Fatalf("get anonymous: %+v %v", got, err)
	}
	c := mustCreate(t, s, "", CreateOptions{})
	if !hex64.MatchString(c.Name) || c.Anonymous {
		t.Fatalf("unnamed volume %+v", c)
	}
}

func TestValidName(t *testing.T) {
	good := []string{"a", "data", "my-vol_1.0", "0", "A.b-c_d", strings.Repeat("x", 255)}
	for _, name := range good {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q): %v", name, err)
		}
	}
	bad := []string{"", ".", "..", "../x", "a/b", "/abs", "-x", "_x", ".x", "a b", "a:b", "é", "a\x00b", "~/x", strings.Repeat("x", 256)}
	s, _ := newStore(t)
	for _, name := range bad {
		err := ValidName(name)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidName(%q): %v", name, err)
		}
		if name == "" {
			continue // Create makes up a name
		}
		if _, _, err := s.Create(ctx, name, CreateOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create(%q): %v", name, err)
		}
	}
	entries, _ := os.ReadDir(s.root)
	if len(entries) != 0 {
		t.Fatalf("invalid creates left %d entries", len(entries))
	}
}

func TestOpenRecovers(t *testing.T) {
	s, reopen := newStore(t)
	mustCreate(t, s, "kept", CreateOptions{})
	lost := mustCreate(t, s, "lost", CreateOptions{})
	// A create that crashed before its record, and a remove that crashed after it.
	ghost := filepath.Join(s.root, "ghost", "_data")
	if err := os.MkdirAll(ghost, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ghost, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A create whose directories never reached the disk.
	if err := os.RemoveAll(s.dir("lost")); err != nil {
		t.Fatal(err)
	}

	s = reopen()
	if _, err := os.Stat(filepath.Join(s.root, "ghost")); !os.IsNotExist(err) {
		t.Fatalf("leftover not removed: %v", err)
	}
	if empty, err := s.Empty("lost"); err != nil || !empty {
		t.Fatalf("lost data dir: empty %v, %v", empty, err)
	}
	if m := mode(t, lost.Mountpoint); m != 0o755 {
		t.Errorf("recreated data mode %o", m)
	}
	if list, err := s.List(); err != nil || len(list) != 2 {
		t.Fatalf("list after reopen: %d, %v", len(list), err)
	}
	// A create over a leftover the store has not cleaned yet starts empty.
	if err := os.MkdirAll(filepath.Join(s.root, "late", "_data", "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "late", CreateOptions{})
	if empty, err := s.Empty("late"); err != nil || !empty {
		t.Fatalf("create over leftover: empty %v, %v", empty, err)
	}
}

func TestEmpty(t *testing.T) {
	s, _ := newStore(t)
	v := mustCreate(t, s, "v", CreateOptions{})
	if empty, err := s.Empty("v"); err != nil || !empty {
		t.Fatalf("new volume: empty %v, %v", empty, err)
	}
	if err := os.Mkdir(filepath.Join(v.Mountpoint, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if empty, err := s.Empty("v"); err != nil || empty {
		t.Fatalf("used volume: empty %v, %v", empty, err)
	}
}

func TestConcurrentCreate(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 16 {
		wg.Go(func() {
			_, c, err := s.Create(ctx, "shared", CreateOptions{})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			if c {
				created++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d creates reported created", created)
	}
}

func TestCanceled(t *testing.T) {
	s, _ := newStore(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Create(c, "v", CreateOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("create: %v", err)
	}
	if err := s.Remove(c, "v"); !errors.Is(err, context.Canceled) {
		t.Fatalf("remove: %v", err)
	}
}

// TestOpenKeepsUnrecordedData: a volume directory without a record is removed when it
// holds nothing (a create cut short), and kept aside in .lost when it holds data.
func TestOpenKeepsUnrecordedData(t *testing.T) {
	s, reopen := newStore(t)
	for _, name := range []string{"empty", "full"} {
		if err := os.MkdirAll(filepath.Join(s.root, name, "_data"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.root, "full", "_data", "table"), []byte("rows\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	if _, err := os.Stat(filepath.Join(s.root, "empty")); !os.IsNotExist(err) {
		t.Errorf("an empty leftover is still there: %v", err)
	}
	kept, _ := filepath.Glob(filepath.Join(s.root, ".lost", "full-*", "_data", "table"))
	if len(kept) != 1 {
		t.Errorf("the data of an unrecorded volume was not kept in .lost: %v", kept)
	}
	if vs, _ := s.List(); len(vs) != 0 {
		t.Errorf("volumes: %v", vs)
	}
}

// Package store owns the daemon's metadata database: one bbolt file under the data root.
//
// Each package that persists something (containers, volumes, projects, the image index)
// keeps its own top-level bucket in the same file and its own record types; this package
// only opens, closes and locks the file. Content (blobs, snapshots, logs) never goes in
// the database: it lives in plain files beside it.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// DB is the open metadata database of one data root.
type DB struct {
	*bolt.DB
	lock *os.File
}

// ErrLocked is returned by Open when another daemon holds the data root.
var ErrLocked = errors.New("data root is in use by another daemon")

// Open takes the data root's lock file and opens its database, creating both if needed.
// A second Open on the same data root, from this or another process, fails with an error
// that wraps ErrLocked and names the holder's pid.
func Open(root string) (*DB, error) {
	// Owner only: below the data root lie unpacked images with setuid binaries and
	// device nodes, which other users must not reach (compare CVE-2021-41091).
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create data root: %w", err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("data root: %w", err)
	}
	lock, err := acquire(filepath.Join(root, "dutchman.lock"))
	if err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(root, "dutchman.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open %s: %w", filepath.Join(root, "dutchman.db"), err)
	}
	return &DB{DB: db, lock: lock}, nil
}

// Close closes the database and releases the lock.
func (db *DB) Close() error {
	err := db.DB.Close()
	db.lock.Close()
	return err
}

func acquire(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s holds %s", ErrLocked, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

//go:build linux

package build

import (
	"context"
	"errors"
	"io"
	gofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestContextFS reads a context as the build sends it: links lead nowhere outside it,
// whatever is swapped meanwhile, a FIFO is refused at once, and on a user's behalf only
// what he may read goes.
func TestContextFS(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.txt"), []byte("app\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "private"), []byte("root's\n"), 0o600)
	os.Symlink("/etc/hostname", filepath.Join(dir, "hostname"))
	os.Symlink("/etc", filepath.Join(dir, "etc"))
	syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644)
	c, err := openContext(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func(c *contextFS, p string) (string, error) {
		rc, err := c.Open(p)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	if got, err := read(c, "app.txt"); got != "app\n" || err != nil {
		t.Errorf("app.txt: %q, %v", got, err)
	}
	for _, p := range []string{"hostname", "etc/hostname", "../../../etc/hostname", "fifo"} {
		if got, err := read(c, p); err == nil {
			t.Errorf("%s was read: %q", p, got)
		}
	}
	// A directory swapped for a link after the context was opened leads nowhere either.
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("f\n"), 0o644)
	os.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "sub.old"))
	os.Symlink("/etc", filepath.Join(dir, "sub"))
	if got, err := read(c, "sub/hostname"); err == nil {
		t.Errorf("sub/hostname through a swapped directory: %q", got)
	}

	// The walk reads directories as directories only: a FIFO in a directory's place
	// fails at once instead of blocking the open.
	if _, err := (dirFS{c.root}).ReadDir("fifo"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("ReadDir of a FIFO: %v; want ENOTDIR", err)
	}

	// On behalf of uid 1000, root's own files are left out; what anyone may read goes.
	owner := uint32(1000)
	u, err := openContext(dir, &owner)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := read(u, "private"); err == nil || !strings.Contains(err.Error(), "not readable by uid 1000") {
		t.Errorf("root's 0600 file for uid 1000: %v", err)
	}
	if got, err := read(u, "app.txt"); got != "app\n" || err != nil {
		t.Errorf("a file anyone may read, for uid 1000: %q, %v", got, err)
	}
	err = u.Walk(context.Background(), "", func(string, gofs.DirEntry, error) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "private: not readable by uid 1000") {
		t.Errorf("the walk for uid 1000: %v", err)
	}
}

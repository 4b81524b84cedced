package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRemoveTreeNeverEmptiesAMount removes a directory, reached through a symbolic link
// (as a data root can be), with a directory bound below it: the bound directory keeps
// its files.
func TestRemoveTreeNeverEmptiesAMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root; make test runs as root")
	}
	base := t.TempDir()
	real, host := filepath.Join(base, "real"), filepath.Join(base, "host")
	for _, d := range []string{filepath.Join(real, "vol", "a b"), host} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(host, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(real, "vol", "a b")
	if err := unix.Mount(host, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	if mps, err := MountsUnder(filepath.Join(link, "vol")); err != nil || !slices.Equal(mps, []string{target}) {
		t.Fatalf("mounts under the link: %v, %v; want %s", mps, err, target)
	}
	if err := RemoveTree(filepath.Join(link, "vol")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "keep")); err != nil {
		t.Errorf("the bound directory lost its file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(real, "vol")); !os.IsNotExist(err) {
		t.Errorf("the tree is still there: %v", err)
	}
}

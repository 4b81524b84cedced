package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func diffIDOf(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

// unpackInto unpacks tar bytes into a fresh directory inside a sandbox directory, so
// that tests can check nothing was written beside it.
func unpackT(t *testing.T, data []byte) (sandbox, dir string, err error) {
	t.Helper()
	sandbox = harness.Dir(t)
	dir = filepath.Join(sandbox, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = unpackLayer(context.Background(), bytes.NewReader(data), diffIDOf(data), dir)
	return sandbox, dir, err
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// onlyLayer checks that the sandbox holds nothing but the layer directory.
func onlyLayer(t *testing.T, sandbox string) {
	t.Helper()
	ents, err := os.ReadDir(sandbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "layer" {
			t.Errorf("unpack wrote %s outside the layer directory", filepath.Join(sandbox, e.Name()))
		}
	}
}

func TestUnpackKeepsEveryKindOfEntry(t *testing.T) {
	second, third := harness.LayeredTop()
	_, dir, err := unpackT(t, second)
	if err != nil {
		t.Fatal(err)
	}
	a := lstat(t, filepath.Join(dir, "data/a.txt"))
	if h := lstat(t, filepath.Join(dir, "data/hard")); h.Ino != a.Ino || a.Nlink != 2 {
		t.Errorf("data/hard: inode %d nlink %d, want a hard link to data/a.txt (inode %d)", h.Ino, a.Nlink, a.Ino)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "data/abs")); l != "/etc/passwd" {
		t.Errorf("data/abs -> %q, want /etc/passwd (kept as written, not resolved)", l)
	}
	if s := lstat(t, filepath.Join(dir, "data/suid")); s.Mode&0o7777 != 0o4755 {
		t.Errorf("data/suid mode %o, want 4755", s.Mode&0o7777)
	}
	if o := lstat(t, filepath.Join(dir, "data/owned")); o.Uid != 1000 || o.Gid != 1001 || o.Mode&0o777 != 0o600 {
		t.Errorf("data/owned: %d:%d %o, want 1000:1001 600", o.Uid, o.Gid, o.Mode&0o777)
	}
	if d := lstat(t, filepath.Join(dir, "data/dir")); d.Mode&0o777 != 0o750 || d.Mtim.Sec != harness.Mtime.Unix() {
		t.Errorf("data/dir: mode %o mtime %d, want 750 and %d (directory times set after its entries)", d.Mode&0o777, d.Mtim.Sec, harness.Mtime.Unix())
	}
	if n := lstat(t, filepath.Join(dir, "data/null")); n.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(n.Rdev) != 1 || unix.Minor(n.Rdev) != 3 {
		t.Errorf("data/null: mode %o rdev %d:%d, want char 1:3", n.Mode, unix.Major(n.Rdev), unix.Minor(n.Rdev))
	}
	if b := lstat(t, filepath.Join(dir, "data/loop")); b.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(b.Rdev) != 7 {
		t.Errorf("data/loop: want block device 7:0")
	}
	if f := lstat(t, filepath.Join(dir, "data/fifo")); f.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("data/fifo: want a fifo")
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(dir, "data/a.txt"), "user.origin", buf)
	if err != nil || string(buf[:n]) != "layer2" {
		t.Errorf("xattr user.origin = %q, %v; want layer2", buf[:max(n, 0)], err)
	}

	_, dir3, err := unpackT(t, third)
	if err != nil {
		t.Fatal(err)
	}
	if w := lstat(t, filepath.Join(dir3, "data/dir/b.txt")); w.Mode&unix.S_IFMT != unix.S_IFCHR || w.Rdev != 0 {
		t.Errorf("whiteout of data/dir/b.txt: want a 0:0 character device, got mode %o rdev %d", w.Mode, w.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(dir3, "data/dir/.wh.b.txt")); !os.IsNotExist(err) {
		t.Errorf(".wh. entry itself was written: %v", err)
	}
	n, err = unix.Lgetxattr(filepath.Join(dir3, "data/opq"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("data/opq opaque xattr = %q, %v; want y", buf[:max(n, 0)], err)
	}
	if _, err := os.Lstat(filepath.Join(dir3, "data/opq/new.txt")); err != nil {
		t.Errorf("entries of an opaque directory in its own layer must stay: %v", err)
	}
}

func TestUnpackRefusesOrConfinesHostileEntries(t *testing.T) {
	cases := []struct {
		name    string
		entries []harness.Entry
		refused bool   // the layer is refused with an invalid-argument error
		inside  string // else: this path inside the layer holds the body "evil"
	}{
		{name: "dotdot", entries: []harness.Entry{{Name: "../evil", Body: "evil"}}, refused: true},
		{name: "dotdot deep", entries: []harness.Entry{{Name: "a/../../evil", Body: "evil"}}, refused: true},
		{name: "dotdot inside is fine", entries: []harness.Entry{{Name: "a/../evil", Body: "evil"}}, inside: "evil"},
		{name: "absolute path", entries: []harness.Entry{{Name: "/evil", Body: "evil"}}, inside: "evil"},
		{name: "symlink parent to absolute dir", entries: []harness.Entry{
			{Name: "escape", Type: tar.TypeSymlink, Link: "/"},
			{Name: "escape/evil", Body: "evil"},
		}, inside: "evil"},
		{name: "symlink parent climbing out", entries: []harness.Entry{
			{Name: "escape", Type: tar.TypeSymlink, Link: "../../../.."},
			{Name: "escape/evil", Body: "evil"},
		}, inside: "evil"},
		{name: "symlink chain", entries: []harness.Entry{
			{Name: "a", Type: tar.TypeSymlink, Link: "b"},
			{Name: "b", Type: tar.TypeSymlink, Link: "../.."},
			{Name: "a/evil", Body: "evil"},
		}, inside: "evil"},
		{name: "file over symlink is not written through it", entries: []harness.Entry{
			{Name: "evil", Type: tar.TypeSymlink, Link: "../outside"},
			{Name: "evil", Body: "evil"},
		}, inside: "evil"},
		{name: "hard link climbing out", entries: []harness.Entry{{Name: "evil", Type: tar.TypeLink, Link: "../../etc/passwd"}}, refused: true},
		{name: "hard link to absolute path outside the layer", entries: []harness.Entry{{Name: "evil", Type: tar.TypeLink, Link: "/etc/passwd"}}, refused: true},
		{name: "hard link through symlink", entries: []harness.Entry{
			{Name: "etc", Type: tar.TypeSymlink, Link: "/etc"},
			{Name: "evil", Type: tar.TypeLink, Link: "etc/passwd"},
		}, refused: true},
		{name: "whiteout climbing out", entries: []harness.Entry{{Name: "../.wh.victim"}}, refused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sandbox, dir, err := unpackT(t, harness.Tar(tc.entries...))
			onlyLayer(t, sandbox)
			if tc.refused {
				if err == nil {
					t.Fatal("unpack succeeded; want the layer refused")
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("error %q is not an invalid-argument error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(dir, tc.inside))
			if err != nil || string(b) != "evil" {
				t.Errorf("%s inside the layer: %q, %v; want the entry confined there", tc.inside, b, err)
			}
		})
	}
	// The host's /etc/passwd was never a target.
	if b, _ := os.ReadFile("/etc/passwd"); !strings.Contains(string(b), "root:") {
		t.Fatal("/etc/passwd changed")
	}
}

func TestUnpackChecksDiffID(t *testing.T) {
	data := harness.Tar(harness.Entry{Name: "a", Body: "a"})
	dir := filepath.Join(harness.Dir(t), "layer")
	os.Mkdir(dir, 0o755)
	_, err := unpackLayer(context.Background(), bytes.NewReader(data), diffIDOf([]byte("other")), dir)
	if !errors.Is(err, errMismatch) {
		t.Fatalf("unpack with a wrong diff ID: %v, want a mismatch", err)
	}
}

func TestUnpackGzipAndZstd(t *testing.T) {
	data := harness.Tar(harness.Entry{Name: "hello", Body: "world"})
	for _, kind := range []string{"gzip", "zstd"} {
		t.Run(kind, func(t *testing.T) {
			compressed := compress(t, kind, data)
			dir := filepath.Join(harness.Dir(t), "layer")
			os.Mkdir(dir, 0o755)
			if _, err := unpackLayer(context.Background(), bytes.NewReader(compressed), diffIDOf(data), dir); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "hello")); string(b) != "world" {
				t.Errorf("hello = %q", b)
			}
		})
	}
}

func TestCleanEntryName(t *testing.T) {
	for in, want := range map[string]string{
		"./a/b": "a/b", "/a": "a", "a/": "a", "./": "", "a/./b/../c": "a/c", "a//b": "a/b",
	} {
		got, err := cleanEntryName(in)
		if err != nil || got != want {
			t.Errorf("cleanEntryName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../a", "a/../../b", "/../a", "a\x00b"} {
		if _, err := cleanEntryName(in); err == nil {
			t.Errorf("cleanEntryName(%q) accepted a bad name", in)
		}
	}
}

func TestChainIDs(t *testing.T) {
	a := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	b := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}
	got := chainIDs([]v1.Hash{a, b})
	want := fmt.Sprintf("%x", sha256.Sum256([]byte(a.String()+" "+b.String())))
	if got[0] != a || got[1].Hex != want {
		t.Errorf("chainIDs = %v, want [%v sha256:%s]", got, a, want)
	}
}

func TestUnpackNeverSetsTimesThroughSymlinks(t *testing.T) {
	victim := filepath.Join(harness.Dir(t), "victim")
	os.Mkdir(victim, 0o755)
	var before unix.Stat_t
	unix.Stat(victim, &before)
	// x -> / , then a directory entry reached through x: its parent is confined to the
	// layer, and its time must be set there, not on the host's directory.
	_, dir, err := unpackT(t, harness.Tar(
		harness.Entry{Name: "x", Type: tar.TypeSymlink, Link: "/"},
		harness.Entry{Name: "x" + victim + "/", Type: tar.TypeDir},
	))
	if err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	unix.Stat(victim, &after)
	if after.Mtim != before.Mtim {
		t.Errorf("the host directory %s got its mtime changed by a layer", victim)
	}
	if !exists(filepath.Join(dir, victim)) {
		t.Error("the directory was not made inside the layer")
	}
}

func TestUnpackReplacingADirectoryKeepsItsParentUsable(t *testing.T) {
	// a/b/ and a/b/c cache handles; a file a/b then replaces the directory: the handle
	// of a (in use) must stay open and valid, and a/b/c must not survive.
	_, dir, err := unpackT(t, harness.Tar(
		harness.Entry{Name: "a/b/", Type: tar.TypeDir},
		harness.Entry{Name: "a/b/c", Body: "c"},
		harness.Entry{Name: "a/b", Body: "now a file"},
		harness.Entry{Name: "a/d", Body: "d"},
		harness.Entry{Name: "s", Type: tar.TypeSymlink, Link: "a"},
		harness.Entry{Name: "s/e", Body: "through the old symlink"},
		harness.Entry{Name: "s/", Type: tar.TypeDir},
		harness.Entry{Name: "s/f", Body: "in the new directory"},
	))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "a/b")); got != "now a file" {
		t.Errorf("a/b = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "a/d")); got != "d" {
		t.Errorf("a/d = %q", got)
	}
	if exists(filepath.Join(dir, "a/f")) || !exists(filepath.Join(dir, "s/f")) {
		t.Error("s/f went into the symlink's old target instead of the directory that replaced it")
	}
}

func TestCopyDriverNeverSetsTimesThroughSymlinks(t *testing.T) {
	host := harness.Dir(t)
	os.Mkdir(filepath.Join(host, "victim"), 0o755)
	var before unix.Stat_t
	unix.Stat(filepath.Join(host, "victim"), &before)
	_, lower, err := unpackT(t, harness.Tar(harness.Entry{Name: "x/victim/", Type: tar.TypeDir}))
	if err != nil {
		t.Fatal(err)
	}
	_, upper, err := unpackT(t, harness.Tar(harness.Entry{Name: "x", Type: tar.TypeSymlink, Link: host}))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(harness.Dir(t), "merged")
	os.Mkdir(dst, 0o755)
	if err := copyLayers(ctx, []string{upper, lower}, dst); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	unix.Stat(filepath.Join(host, "victim"), &after)
	if after.Mtim != before.Mtim {
		t.Error("copying layers set the time of a host directory through a symlink")
	}
	if l, _ := os.Readlink(filepath.Join(dst, "x")); l != host {
		t.Errorf("x -> %q, want the upper layer's symlink", l)
	}
}

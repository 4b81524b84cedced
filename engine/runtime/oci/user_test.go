//go:build linux

package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// fsEntry is a file, directory, symlink or FIFO a test puts in a directory.
type fsEntry struct {
	path string // relative to the directory
	body string // a regular file's contents
	link string // a symlink's target
	dir  bool
	fifo bool
	zero bool // a character device like /dev/zero (1:5)
}

// writeEntries creates entries under dir, making parent directories as needed.
func writeEntries(t *testing.T, dir string, entries ...fsEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dir, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.link != "":
			err = os.Symlink(e.link, p)
		case e.dir:
			err = os.Mkdir(p, 0o755)
		case e.fifo:
			err = unix.Mkfifo(p, 0o644)
		case e.zero:
			err = unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))
		default:
			err = os.WriteFile(p, []byte(e.body), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment, and a blank line

alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken:x:notanumber:0::/:/bin/sh
nohome:x:1002:1002:::/bin/sh
2000:x:3000:3000::/home/numeric:/bin/sh
alice:x:1111:1111:second alice:/home/alice2:/bin/sh
`

const testGroup = `root:x:0:
daemon:x:1:
wheel:x:10:root,alice
alice:x:1000:
bob:x:1001:
staff:x:50:alice,bob
audio:x:29: bob , alice
nohome:x:1002:
`

func TestResolveUser(t *testing.T) {
	rootfs := harness.Dir(t)
	writeEntries(t, rootfs,
		fsEntry{path: "etc/passwd", body: testPasswd},
		fsEntry{path: "etc/group", body: testGroup},
	)
	bare := harness.Dir(t) // no /etc at all

	tests := []struct {
		name    string
		rootfs  string
		user    string
		want    specs.User
		home    string
		wantErr string // substring; the error must also be errdefs.Invalid
	}{
		{name: "empty is root with its groups", rootfs: rootfs, user: "",
			want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, home: "/root"},
		{name: "root by name", rootfs: rootfs, user: "root",
			want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, home: "/root"},
		{name: "root by uid", rootfs: rootfs, user: "0",
			want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, home: "/root"},
		{name: "name gets supplementary groups in file order", rootfs: rootfs, user: "alice",
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 50, 29}}, home: "/home/alice"},
		{name: "uid with an entry gets its groups too", rootfs: rootfs, user: "1000",
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 50, 29}}, home: "/home/alice"},
		{name: "name:group has no supplementary groups", rootfs: rootfs, user: "alice:staff",
			want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}, home: "/home/alice"},
		{name: "name:gid", rootfs: rootfs, user: "alice:50",
			want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}, home: "/home/alice"},
		{name: "uid:group", rootfs: rootfs, user: "1001:audio",
			want: specs.User{UID: 1001, GID: 29, AdditionalGids: []uint32{29}}, home: "/home/bob"},
		{name: "gid without entry", rootfs: rootfs, user: "alice:777",
			want: specs.User{UID: 1000, GID: 777, AdditionalGids: []uint32{777}}, home: "/home/alice"},
		{name: "uid without entry", rootfs: rootfs, user: "4242",
			want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}, home: "/"},
		{name: "uid:gid without entries", rootfs: rootfs, user: "4242:4343",
			want: specs.User{UID: 4242, GID: 4343, AdditionalGids: []uint32{4343}}, home: "/"},
		{name: "only a group", rootfs: rootfs, user: ":staff",
			want: specs.User{UID: 0, GID: 50, AdditionalGids: []uint32{50}}, home: "/root"},
		{name: "numeric is always an id, never a name", rootfs: rootfs, user: "2000",
			want: specs.User{UID: 2000, GID: 0, AdditionalGids: []uint32{0}}, home: "/"},
		{name: "first of duplicate entries wins", rootfs: rootfs, user: "alice:alice",
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}}, home: "/home/alice"},
		{name: "empty home is /", rootfs: rootfs, user: "nohome",
			want: specs.User{UID: 1002, GID: 1002, AdditionalGids: []uint32{1002}}, home: "/"},
		{name: "no passwd: empty is root", rootfs: bare, user: "",
			want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}, home: "/"},
		{name: "no passwd: numeric ids", rootfs: bare, user: "123:456",
			want: specs.User{UID: 123, GID: 456, AdditionalGids: []uint32{456}}, home: "/"},

		{name: "unknown name", rootfs: rootfs, user: "mallory",
			wantErr: "unable to find user mallory: no matching entries in passwd file"},
		{name: "unknown group", rootfs: rootfs, user: "alice:nogroup",
			wantErr: "unable to find group nogroup: no matching entries in group file"},
		{name: "malformed line is skipped, not root", rootfs: rootfs, user: "broken",
			wantErr: "unable to find user broken: no matching entries in passwd file"},
		{name: "no passwd: name", rootfs: bare, user: "alice",
			wantErr: "unable to find user alice: no matching entries in passwd file"},
		{name: "no group: group name", rootfs: bare, user: "0:wheel",
			wantErr: "unable to find group wheel: no matching entries in group file"},
		{name: "negative uid", rootfs: rootfs, user: "-1", wantErr: "must be in range"},
		{name: "uid too large", rootfs: rootfs, user: "2147483648", wantErr: "must be in range"},
		{name: "gid too large", rootfs: rootfs, user: "1:4294967296", wantErr: "must be in range"},
		{name: "two colons", rootfs: rootfs, user: "alice:staff:x", wantErr: "invalid user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, home, err := ResolveUser(tt.rootfs, tt.user)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveUser(%q) error = %v, want one containing %q", tt.user, err, tt.wantErr)
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("error %v is not errdefs.Invalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.user, err)
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Errorf("ResolveUser(%q) = %+v, want %+v", tt.user, got, tt.want)
			}
			if home != tt.home {
				t.Errorf("ResolveUser(%q) home = %q, want %q", tt.user, home, tt.home)
			}
		})
	}
}

// TestResolveUserHostileRootfs checks that the container's /etc/passwd and /etc/group are
// read inside its rootfs whatever symlinks the image plants. Each case has a decoy next to
// the rootfs, where a naive filepath.Join + open would land, that gives alice another
// uid (6666) or group (666).
func TestResolveUserHostileRootfs(t *testing.T) {
	const inside = "alice:x:1234:1234::/home/alice:/bin/sh\n"
	const decoy = "alice:x:6666:6666::/decoy:/bin/sh\nroot:x:0:0::/decoy:/bin/sh\n"
	tests := []struct {
		name    string
		entries []fsEntry // under the rootfs
		user    string
		wantUID uint32
		wantGID uint32
		wantErr string
	}{
		{
			name: "absolute symlink to the host's shadow resolves in the rootfs",
			entries: []fsEntry{
				{path: "etc/passwd", link: "/etc/shadow"},
				{path: "etc/shadow", body: inside},
			},
			user: "alice", wantUID: 1234, wantGID: 1234,
		},
		{
			name: "absolute symlink to the host's shadow, missing in the rootfs",
			entries: []fsEntry{
				{path: "etc/passwd", link: "/etc/shadow"},
			},
			// The host's /etc/shadow and /etc/passwd both have root; the rootfs has none.
			user: "root", wantErr: "unable to find user root",
		},
		{
			name: "relative symlink climbing out is clamped at the root",
			entries: []fsEntry{
				{path: "etc/passwd", link: "../../../decoy-passwd"},
				{path: "decoy-passwd", body: inside},
			},
			user: "alice", wantUID: 1234, wantGID: 1234,
		},
		{
			name: "symlinked /etc climbing out is clamped at the root",
			entries: []fsEntry{
				{path: "etc", link: "../../decoy-etc"},
				{path: "decoy-etc/passwd", body: inside},
			},
			user: "alice", wantUID: 1234, wantGID: 1234,
		},
		{
			name: "group symlink climbing out is clamped at the root",
			entries: []fsEntry{
				{path: "etc/passwd", body: inside},
				{path: "etc/group", link: "../../../decoy-group"},
				{path: "decoy-group", body: "staff:x:50:alice\n"},
			},
			user: "alice:staff", wantUID: 1234, wantGID: 50,
		},
		{
			name: "symlink to ../../../etc/passwd is itself: a loop, not the host's",
			entries: []fsEntry{
				{path: "etc/passwd", link: "../../../etc/passwd"},
			},
			user: "root", wantErr: "/etc/passwd",
		},
		{
			name:    "a directory is refused",
			entries: []fsEntry{{path: "etc/passwd", dir: true}},
			user:    "alice", wantErr: "not a regular file",
		},
		{
			name:    "a FIFO is refused without blocking",
			entries: []fsEntry{{path: "etc/passwd", fifo: true}},
			user:    "alice", wantErr: "not a regular file",
		},
		{
			name:    "a device, endless to read, is refused",
			entries: []fsEntry{{path: "etc/passwd", link: "/dev/zero"}, {path: "dev/zero", zero: true}},
			user:    "alice", wantErr: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := harness.Dir(t)
			rootfs := filepath.Join(dir, "rootfs")
			writeEntries(t, dir,
				fsEntry{path: "rootfs", dir: true},
				fsEntry{path: "decoy-passwd", body: decoy},
				fsEntry{path: "decoy-etc/passwd", body: decoy},
				fsEntry{path: "decoy-group", body: "staff:x:666:alice\n"},
			)
			writeEntries(t, rootfs, tt.entries...)

			type result struct {
				u   specs.User
				err error
			}
			done := make(chan result, 1)
			go func() {
				u, _, err := ResolveUser(rootfs, tt.user)
				done <- result{u, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ResolveUser blocked on the container's file")
			}
			if tt.wantErr != "" {
				t.Logf("error: %v", r.err)
				if r.err == nil || !strings.Contains(r.err.Error(), tt.wantErr) {
					t.Fatalf("error = %v (user %+v), want one containing %q", r.err, r.u, tt.wantErr)
				}
				if !errors.Is(r.err, errdefs.ErrInvalidArgument) {
					t.Errorf("error %v is not errdefs.Invalid: the image is at fault", r.err)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.u.UID != tt.wantUID || r.u.GID != tt.wantGID {
				t.Errorf("got uid %d gid %d, want %d %d (6666 or 666 come from outside the rootfs)", r.u.UID, r.u.GID, tt.wantUID, tt.wantGID)
			}
		})
	}
}

func TestResolveUserRefusesHugeFile(t *testing.T) {
	rootfs := harness.Dir(t)
	writeEntries(t, rootfs, fsEntry{path: "etc", dir: true})
	f, err := os.Create(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: no disk is used for the hole.
	if err := f.Truncate(maxUserDBSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = ResolveUser(rootfs, "alice")
	if err == nil || !strings.Contains(err.Error(), "too large") || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("error = %v, want an errdefs.Invalid \"too large\"", err)
	}
}

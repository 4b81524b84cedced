//go:build linux

package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Mtime is the modification time of every entry in the test layers.
var Mtime = time.Unix(1700000000, 0).UTC()

// Entry is one tar entry of a test layer.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg if zero
	Body     string
	Mode     int64
	Link     string
	Uid, Gid int
	Major    int64
	Minor    int64
	Xattrs   map[string]string
}

// Tar writes entries as an uncompressed tar.
func Tar(entries ...Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link, Uid: e.Uid, Gid: e.Gid,
			ModTime: Mtime, Devmajor: e.Major, Devminor: e.Minor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if len(e.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.Body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

var (
	gzipMu    sync.Mutex
	gzipCache = map[[32]byte][]byte{}
)

// Layer makes a gzip-compressed layer of a tar. Each tar is compressed once per test
// process, however many images use it.
func Layer(t testing.TB, tarball_ []byte) v1.Layer {
	t.Helper()
	key := sha256.Sum256(tarball_)
	gzipMu.Lock()
	gz, ok := gzipCache[key]
	if !ok {
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		w.Write(tarball_)
		w.Close()
		gz = buf.Bytes()
		gzipCache[key] = gz
	}
	gzipMu.Unlock()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// BusyboxTar is a root filesystem of /bin/busybox (from busybox-static) with a symlink
// for each of its applets, /etc/passwd, /etc/group and a few directories.
func BusyboxTar(t testing.TB) []byte {
	t.Helper()
	busyboxOnce.Do(func() { busyboxTar = makeBusyboxTar(t) })
	if busyboxTar == nil {
		t.Fatal("the busybox layer could not be made")
	}
	return busyboxTar
}

var (
	busyboxOnce sync.Once
	busyboxTar  []byte
)

func makeBusyboxTar(t testing.TB) []byte {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("read /bin/busybox (Debian package busybox-static; run make deps): %v", err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	return busyboxRootfs(bin, strings.Fields(string(out)))
}

// busyboxRootfs is the root filesystem of BusyboxTar around a busybox binary.
func busyboxRootfs(bin []byte, applets []string) []byte {
	sort.Strings(applets)
	entries := []Entry{}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "root", "var", "var/www", "run", "usr", "usr/bin", "sbin"} {
		entries = append(entries, Entry{Name: d + "/", Type: tar.TypeDir})
	}
	entries = append(entries, Entry{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777})
	entries = append(entries, Entry{Name: "bin/busybox", Body: string(bin), Mode: 0o755})
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		entries = append(entries, Entry{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox", Mode: 0o777})
	}
	entries = append(entries,
		Entry{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		Entry{Name: "etc/group", Body: "root:x:0:\nnogroup:x:65534:\n"},
		Entry{Name: "var/www/index.html", Body: "hello from busybox httpd\n"},
	)
	return Tar(entries...)
}

// Image assembles an image from layers with a config in the style of busybox images.
func Image(t testing.TB, platform v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: Mtime}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Push writes img to ref (host:port/repo:tag) on a plain-HTTP loopback registry.
func Push(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushIndex writes a multi-platform index to ref.
func PushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Amd64 and Arm64 are the platforms the test images are made for.
var (
	Amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	Arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// Images are the references of the standard test images in a registry.
type Images struct {
	// Busybox: one layer, busybox-static and its applets.
	Busybox string
	// Layered: busybox plus two layers exercising every kind of entry: files, modes,
	// owners, hard links, symlinks, xattrs, device nodes, whiteouts, an opaque directory.
	Layered string
	// Shared: busybox's layer plus one new layer, to check reuse.
	Shared string
	// Multi: an index for linux/amd64 and linux/arm64; /etc/platform says which.
	Multi string
	// Digests of the pushed manifests (for Multi, of the index).
	BusyboxDigest, LayeredDigest, SharedDigest, MultiDigest v1.Hash
	// BusyboxLayer is the compressed digest of busybox's one layer.
	BusyboxLayer v1.Hash
}

// LayeredTop is the content of the two top layers of the Layered image.
func LayeredTop() (second, third []byte) {
	second = Tar(
		Entry{Name: "data/", Type: tar.TypeDir},
		Entry{Name: "data/a.txt", Body: "version 1\n", Xattrs: map[string]string{"user.origin": "layer2"}},
		Entry{Name: "data/hard", Type: tar.TypeLink, Link: "data/a.txt"},
		Entry{Name: "data/link", Type: tar.TypeSymlink, Link: "a.txt"},
		Entry{Name: "data/abs", Type: tar.TypeSymlink, Link: "/etc/passwd"},
		Entry{Name: "data/suid", Body: "#!/bin/sh\n", Mode: 0o4755},
		Entry{Name: "data/owned", Body: "mine\n", Uid: 1000, Gid: 1001, Mode: 0o600},
		Entry{Name: "data/dir/", Type: tar.TypeDir, Mode: 0o750},
		Entry{Name: "data/dir/b.txt", Body: "to be deleted\n"},
		Entry{Name: "data/opq/", Type: tar.TypeDir},
		Entry{Name: "data/opq/old.txt", Body: "hidden by an opaque dir\n"},
		Entry{Name: "data/null", Type: tar.TypeChar, Major: 1, Minor: 3, Mode: 0o666},
		Entry{Name: "data/loop", Type: tar.TypeBlock, Major: 7, Minor: 0, Mode: 0o660},
		Entry{Name: "data/fifo", Type: tar.TypeFifo, Mode: 0o644},
		Entry{Name: "etc/motd", Body: "deleted by layer 3\n"},
	)
	third = Tar(
		Entry{Name: "data/a.txt", Body: "version 2\n"},
		Entry{Name: "data/dir/.wh.b.txt"},
		Entry{Name: "data/opq/", Type: tar.TypeDir},
		Entry{Name: "data/opq/.wh..wh..opq"},
		Entry{Name: "data/opq/new.txt", Body: "new\n"},
		Entry{Name: "etc/.wh.motd"},
	)
	return second, third
}

// PushTestImages builds the standard test images and pushes them to reg.
func PushTestImages(t testing.TB, reg *Registry) *Images {
	t.Helper()
	bb := Layer(t, BusyboxTar(t))
	second, third := LayeredTop()
	ims := &Images{
		Busybox: reg.Ref("test/busybox:latest"),
		Layered: reg.Ref("test/layered:v1"),
		Shared:  reg.Ref("test/shared:v1"),
		Multi:   reg.Ref("test/multi:latest"),
	}
	ims.BusyboxLayer, _ = bb.Digest()
	ims.BusyboxDigest = Push(t, ims.Busybox, Image(t, Amd64, bb))
	ims.LayeredDigest = Push(t, ims.Layered, Image(t, Amd64, bb, Layer(t, second), Layer(t, third)))
	ims.SharedDigest = Push(t, ims.Shared, Image(t, Amd64, bb, Layer(t, Tar(Entry{Name: "etc/shared", Body: "shared\n"}))))

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{Amd64, Arm64} {
		p := p
		img := Image(t, p, bb, Layer(t, Tar(Entry{Name: "etc/platform", Body: p.OS + "/" + p.Architecture + "\n"})))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ims.MultiDigest = PushIndex(t, ims.Multi, idx)
	return ims
}

// RandomLayer makes a layer of n files of size bytes each: half seeded-random bytes and
// half repetitive, like the peer benchmarks' "big" image, so gzip has real work.
func RandomLayer(t testing.TB, seed int64, files int, size int) v1.Layer {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	entries := []Entry{{Name: fmt.Sprintf("data%d/", seed), Type: tar.TypeDir}}
	for i := 0; i < files; i++ {
		half := size / 2
		b := make([]byte, half, size)
		rng.Read(b)
		pat := []byte(fmt.Sprintf("layer%d-file%d ", seed, i))
		for len(b) < size {
			b = append(b, pat...)
		}
		entries = append(entries, Entry{Name: fmt.Sprintf("data%d/f%03d.bin", seed, i), Body: string(b[:size])})
	}
	return Layer(t, Tar(entries...))
}

var (
	sharedOnce sync.Once
	sharedReg  *Registry
	sharedIms  *Images
)

// forever is a testing.TB whose cleanups never run: what it starts lives until the test
// process's directory is cleaned up at exit.
type forever struct{ testing.TB }

func (forever) Cleanup(func()) {}

// SharedImages returns a registry holding the standard test images, started once per
// test process, for tests that only read from it. Tests that push to a registry, stop
// it or change its storage start their own.
func SharedImages(t testing.TB) (*Registry, *Images) {
	t.Helper()
	sharedOnce.Do(func() {
		sharedReg = StartRegistry(forever{t})
		sharedIms = PushTestImages(forever{t}, sharedReg)
	})
	if sharedIms == nil {
		t.Fatal("the shared test registry failed to start")
	}
	return sharedReg, sharedIms
}

package images

import (
	"archive/tar"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

var ctx = context.Background()

func testImages(t *testing.T) (*harness.Registry, *harness.Images) {
	return harness.SharedImages(t)
}

func newStoreAt(t testing.TB, root string, opts ...Option) *Store {
	t.Helper()
	db, err := bolt.Open(filepath.Join(root, "test.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, filepath.Join(root, "images"), db, append([]Option{WithRetry(1, 10e6)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fss, err := s.ListRootfs(ctx); err == nil {
			for _, fs := range fss {
				s.RemoveRootfs(ctx, fs.ID)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		db.Close()
	})
	return s
}

func newStore(t *testing.T, opts ...Option) *Store {
	return newStoreAt(t, harness.Dir(t), opts...)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func count(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestPullLayeredImageIntoRootfs(t *testing.T) {
	_, ims := testImages(t)
	for _, driver := range []string{DriverOverlay, DriverCopy} {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, WithDriver(driver))
			im, err := s.Pull(ctx, ims.Layered)
			if err != nil {
				t.Fatal(err)
			}
			if im.Digest != ims.LayeredDigest.String() || len(im.Layers) != 3 || im.Platform != "linux/amd64" {
				t.Fatalf("pulled %+v", im)
			}
			if im.Size <= 1<<20 {
				t.Errorf("size %d: want the unpacked size (busybox alone is over 1 MiB)", im.Size)
			}
			fs, err := s.CreateRootfs(ctx, "c1", "web", ims.Layered)
			if err != nil {
				t.Fatal(err)
			}
			root := fs.Path
			if got := readFile(t, filepath.Join(root, "data/a.txt")); got != "version 2\n" {
				t.Errorf("data/a.txt = %q, want the top layer's", got)
			}
			for _, gone := range []string{"data/dir/b.txt", "data/opq/old.txt", "etc/motd"} {
				if exists(filepath.Join(root, gone)) {
					t.Errorf("%s is visible; a whiteout or opaque directory in a higher layer removed it", gone)
				}
			}
			for _, kept := range []string{"data/dir", "data/opq/new.txt", "bin/busybox", "bin/sh", "data/hard", "data/null", "etc/passwd"} {
				if !exists(filepath.Join(root, kept)) {
					t.Errorf("%s is missing", kept)
				}
			}
			if got := readFile(t, filepath.Join(root, "data/hard")); got != "version 1\n" {
				t.Errorf("data/hard = %q: the hard link keeps layer 2's file", got)
			}
			if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != "busybox" {
				t.Errorf("bin/sh -> %q", l)
			}
			var st unix.Stat_t
			unix.Lstat(filepath.Join(root, "data/owned"), &st)
			if st.Uid != 1000 || st.Gid != 1001 {
				t.Errorf("data/owned owned by %d:%d", st.Uid, st.Gid)
			}
			// The container's writes stay in its own filesystem.
			if err := os.WriteFile(filepath.Join(root, "etc/written"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			fs2, err := s.CreateRootfs(ctx, "c2", "db", ims.Layered)
			if err != nil {
				t.Fatal(err)
			}
			if exists(filepath.Join(fs2.Path, "etc/written")) {
				t.Error("a write in one container's root filesystem shows in another's")
			}
			if _, err := s.CreateRootfs(ctx, "c2", "db", ims.Layered); !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Errorf("second rootfs c2: %v, want already exists", err)
			}

			// In use: removal is refused and names the containers.
			_, err = s.Delete(ctx, ims.Layered, false)
			if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "web") {
				t.Fatalf("delete while in use: %v, want a conflict naming container web", err)
			}
			for _, id := range []string{"c1", "c2"} {
				if err := s.RemoveRootfs(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if len(harness.Mounts(s.Root())) != 0 {
				t.Errorf("mounts left: %v", harness.Mounts(s.Root()))
			}
			del, err := s.Delete(ctx, ims.Layered, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(del.Untagged) != 1 || len(del.Deleted) != 1 {
				t.Errorf("delete = %+v", del)
			}
			if n := count(t, s.blobs.dir) + count(t, s.snaps.dir); n != 0 {
				t.Errorf("%d blobs and snapshots left after deleting the only image", n)
			}
		})
	}
}

func TestSecondImageDownloadsOnlyNewLayers(t *testing.T) {
	reg, ims := testImages(t)
	s := newStore(t)
	before := reg.BlobGets(ims.BusyboxLayer.String())
	if _, err := s.Pull(ctx, ims.Busybox); err != nil {
		t.Fatal(err)
	}
	snap := s.snaps.path(mustImage(t, s, ims.Busybox).Layers[0].ChainID)
	var st1 unix.Stat_t
	unix.Stat(snap, &st1)

	var last Progress
	if _, err := s.Pull(ctx, ims.Shared, WithProgress(func(p Progress) { last = p })); err != nil {
		t.Fatal(err)
	}
	if got := reg.BlobGets(ims.BusyboxLayer.String()) - before; got != 1 {
		t.Errorf("busybox layer downloaded %d times for two images that share it, want 1", got)
	}
	if last.Status != PullDone || len(last.Layers) != 2 || last.Layers[0].Status != LayerExists || last.Layers[1].Status != LayerDone {
		t.Errorf("progress of the second pull: %+v; want the shared layer reported as existing", last)
	}
	var st2 unix.Stat_t
	unix.Stat(snap, &st2)
	if st1.Ino != st2.Ino || st1.Ctim != st2.Ctim {
		t.Error("the shared layer's snapshot was unpacked again")
	}
	if n := count(t, s.snaps.dir); n != 2 {
		t.Errorf("%d snapshots for two images sharing one of their two layers, want 2", n)
	}
	// Removing one image keeps what the other uses.
	if _, err := s.Delete(ctx, ims.Busybox, false); err != nil {
		t.Fatal(err)
	}
	if !exists(snap) {
		t.Error("deleting busybox removed the snapshot the shared image still uses")
	}
}

func mustImage(t *testing.T, s *Store, ref string) *imageRecord {
	t.Helper()
	_, rec, _, err := s.image(ref)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestPullChoosesPlatform(t *testing.T) {
	_, ims := testImages(t)
	s := newStore(t)
	cases := []struct {
		platform *v1.Platform
		want     string
	}{
		{nil, "linux/amd64\n"},
		{&harness.Arm64, "linux/arm64\n"},
	}
	for _, c := range cases {
		var opts []PullOption
		if c.platform != nil {
			opts = append(opts, WithPlatform(*c.platform))
		}
		im, err := s.Pull(ctx, ims.Multi, opts...)
		if err != nil {
			t.Fatal(err)
		}
		top := im.Layers[len(im.Layers)-1].ChainID
		h, _ := v1.NewHash(top)
		if got := readFile(t, filepath.Join(s.snaps.path(h), "etc/platform")); got != c.want {
			t.Errorf("platform %v: /etc/platform = %q, want %q", c.platform, got, c.want)
		}
		if len(im.RepoDigests) != 1 || !strings.HasSuffix(im.RepoDigests[0], "@"+ims.MultiDigest.String()) {
			t.Errorf("repo digests %v, want the index digest %s", im.RepoDigests, ims.MultiDigest)
		}
	}
	_, err := s.Pull(ctx, ims.Multi, WithPlatform(v1.Platform{OS: "linux", Architecture: "s390x"}))
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("pull for a platform the index lacks: %v; want not found, listing what it has", err)
	}
}

func TestPullByDigestAndTag(t *testing.T) {
	reg, ims := testImages(t)
	s := newStore(t)
	byDigest := reg.Ref("test/busybox@" + ims.BusyboxDigest.String())
	im, err := s.Pull(ctx, byDigest)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Names) != 1 || im.Names[0] != byDigest {
		t.Errorf("names %v, want [%s]", im.Names, byDigest)
	}
	if err := s.Tag(ctx, byDigest, "local/bb:one"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "local/bb:one")
	if err != nil || got.Digest != im.Digest {
		t.Fatalf("get by new tag: %v %v", got, err)
	}
	if got.Config == nil || got.Config.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config not read: %+v", got.Config)
	}
	if _, err := s.Get(ctx, im.ID[len("sha256:"):][:12]); err != nil {
		t.Errorf("get by short ID: %v", err)
	}
	if err := s.Tag(ctx, "local/bb:one", "local/bb@"+im.Digest); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("tag with a digest as target: %v, want invalid", err)
	}
	// An ID with several names needs force.
	if _, err := s.Delete(ctx, im.ID, false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("delete by ID with two names: %v, want conflict", err)
	}
	del, err := s.Delete(ctx, "local/bb:one", false)
	if err != nil || len(del.Untagged) != 1 || len(del.Deleted) != 0 {
		t.Errorf("untag one of two names: %+v %v", del, err)
	}
	if _, err := s.Delete(ctx, im.ID, false); err != nil {
		t.Errorf("delete by ID: %v", err)
	}
}

func TestPullErrorsLeaveNothingAndRecover(t *testing.T) {
	reg := harness.StartRegistry(t)
	bb := harness.Layer(t, harness.BusyboxTar(t))
	extra := harness.RandomLayer(t, 7, 2, 1<<20)
	img := harness.Image(t, harness.Amd64, bb, extra)
	ref := reg.Ref("err/app:v1")
	harness.Push(t, ref, img)
	extraDigest, _ := extra.Digest()
	s := newStore(t)

	cases := []struct {
		name  string
		ref   string
		kind  error
		words string
	}{
		{"invalid reference", "UPPER/case:tag", errdefs.ErrInvalidArgument, "invalid reference"},
		{"unknown tag", reg.Ref("err/app:nope"), errdefs.ErrNotFound, "MANIFEST_UNKNOWN"},
		{"unknown repository", reg.Ref("err/none:v1"), errdefs.ErrNotFound, ""},
		{"nothing listening", "127.0.0.1:1/app:v1", errdefs.ErrUnavailable, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Pull(ctx, c.ref)
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.words) {
				t.Fatalf("pull: %v; want %v mentioning %q", err, c.kind, c.words)
			}
			noImages(t, s)
		})
	}

	t.Run("digest mismatch", func(t *testing.T) {
		path := reg.BlobPath(extraDigest.String())
		good, _ := os.ReadFile(path)
		bad := append([]byte(nil), good...)
		bad[len(bad)/2] ^= 0xff
		os.WriteFile(path, bad, 0o644)
		_, err := s.Pull(ctx, ref)
		os.WriteFile(path, good, 0o644)
		if err == nil || !strings.Contains(err.Error(), extraDigest.String()) || !errors.Is(err, errMismatch) {
			t.Fatalf("pull of a corrupted blob: %v; want a mismatch naming %s", err, extraDigest)
		}
		noImages(t, s)
		if s.blobs.has(extraDigest) {
			t.Error("the corrupted blob was stored")
		}
	})

	t.Run("missing blob", func(t *testing.T) {
		path := reg.BlobPath(extraDigest.String())
		good, _ := os.ReadFile(path)
		os.Remove(path)
		_, err := s.Pull(ctx, ref)
		os.WriteFile(path, good, 0o644)
		if err == nil || !strings.Contains(err.Error(), extraDigest.String()) {
			t.Fatalf("pull with a blob missing from the registry: %v", err)
		}
		noImages(t, s)
	})

	t.Run("next pull succeeds and reuses verified blobs", func(t *testing.T) {
		bbDigest, _ := bb.Digest()
		if !s.blobs.has(bbDigest) {
			t.Fatal("the busybox layer, verified during the failed pulls, was not kept")
		}
		before := reg.BlobGets(bbDigest.String())
		if _, err := s.Pull(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if got := reg.BlobGets(bbDigest.String()) - before; got != 0 {
			t.Errorf("busybox layer downloaded %d more times; it was already verified and stored", got)
		}
	})
}

// noImages checks that a failed pull left no image, and nothing in ingest/.
func noImages(t *testing.T, s *Store) {
	t.Helper()
	ims, err := s.List(ctx)
	if err != nil || len(ims) != 0 {
		t.Errorf("after a failed pull: %d images, %v", len(ims), err)
	}
	if n := count(t, s.blobs.ingest); n != 0 {
		t.Errorf("%d temporary files left in ingest/", n)
	}
}

func TestRegistryDiesMidPull(t *testing.T) {
	reg := harness.StartRegistry(t)
	var layers []v1.Layer
	for i := range 4 {
		layers = append(layers, harness.RandomLayer(t, int64(100+i), 4, 1<<20))
	}
	harness.Push(t, reg.Ref("dies/app:v1"), harness.Image(t, harness.Amd64, layers...))
	// 4 MiB layers at 8 MiB/s: half a second each, time enough to stop the registry
	// after the first.
	ref := harness.Throttle(t, reg.Addr, 8<<20) + "/dies/app:v1"
	s := newStore(t, WithMaxConcurrentDownloads(1))

	var once sync.Once
	_, err := s.Pull(ctx, ref, WithProgress(func(p Progress) {
		if len(p.Layers) > 0 && p.Layers[0].Status == LayerDone {
			once.Do(reg.Stop)
		}
	}))
	if err == nil {
		t.Fatal("pull succeeded with the registry stopped")
	}
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("error %q: want unavailable, after retries", err)
	}
	noImages(t, s)
	first, _ := layers[0].Digest()
	if !s.blobs.has(first) {
		t.Fatal("the layer finished before the registry died was not kept")
	}
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	before := reg.BlobGets(first.String())
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if reg.BlobGets(first.String()) != before {
		t.Error("the first layer was downloaded again")
	}
}

func TestFullDisk(t *testing.T) {
	reg := harness.StartRegistry(t)
	var layers []v1.Layer
	for i := range 3 {
		layers = append(layers, harness.RandomLayer(t, int64(200+i), 4, 1<<20))
	}
	ref := reg.Ref("full/app:v1")
	harness.Push(t, ref, harness.Image(t, harness.Amd64, layers...))

	root := harness.Dir(t)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=6m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	s := newStoreAt(t, root)
	_, err := s.Pull(ctx, ref)
	if !errors.Is(err, errdefs.ErrNoSpace) {
		t.Fatalf("pull onto a full disk: %v, want no space", err)
	}
	noImages(t, s)
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatalf("pull after space was freed: %v", err)
	}
}

func TestConcurrentPullsOfOneImage(t *testing.T) {
	reg, ims := testImages(t)
	s := newStore(t)
	before := reg.BlobGets(ims.BusyboxLayer.String())
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Pull(ctx, ims.Busybox) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := reg.BlobGets(ims.BusyboxLayer.String()) - before; got != 1 {
		t.Errorf("four concurrent pulls downloaded the layer %d times, want 1", got)
	}
}

func TestManyLayersMount(t *testing.T) {
	reg := harness.StartRegistry(t)
	var layers []v1.Layer
	for i := range 130 {
		layers = append(layers, harness.Layer(t, harness.Tar(harness.Entry{Name: "layer", Body: string(rune('a' + i%26))})))
	}
	ref := reg.Ref("many/layers:v1")
	harness.Push(t, ref, harness.Image(t, harness.Amd64, layers...))
	s := newStore(t, WithDriver(DriverOverlay))
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	fs, err := s.CreateRootfs(ctx, "many", "many", ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(fs.Path, "layer")); got != string(rune('a'+129%26)) {
		t.Errorf("layer = %q, want the top layer's", got)
	}
}

func TestTransientRegistryErrorsAreRetried(t *testing.T) {
	reg, ims := testImages(t)
	for _, fault := range []harness.Fault{harness.Fault503, harness.Fault429, harness.FaultReset} {
		t.Run(string(fault), func(t *testing.T) {
			proxy := harness.Flaky(t, reg.Addr, fault)
			s := newStore(t)
			ref := strings.Replace(ims.Layered, reg.Addr, proxy.Addr, 1)
			if _, err := s.Pull(ctx, ref); err != nil {
				t.Fatalf("pull through a registry that fails each blob once: %v", err)
			}
			if proxy.Failures.Load() < 4 {
				t.Errorf("the proxy failed %d downloads; want every blob (config and 3 layers) failed once", proxy.Failures.Load())
			}
			if fault == harness.FaultReset && proxy.Ranges.Load() < 3 {
				t.Errorf("%d downloads resumed with a range; want each of the 3 layers resumed where it was cut", proxy.Ranges.Load())
			}
		})
	}
}

func TestPullsListsPullsUnderWay(t *testing.T) {
	reg := harness.StartRegistry(t)
	harness.Push(t, reg.Ref("slow/app:v1"), harness.Image(t, harness.Amd64, harness.RandomLayer(t, 300, 4, 1<<20)))
	ref := harness.Throttle(t, reg.Addr, 4<<20) + "/slow/app:v1"
	s := newStore(t)
	seen := make(chan []Progress, 1)
	_, err := s.Pull(ctx, ref, WithProgress(func(p Progress) {
		if p.Status == PullPulling && len(p.Layers) == 1 && p.Layers[0].Current > 0 {
			select {
			case seen <- s.Pulls():
			default:
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ps := <-seen:
		if len(ps) != 1 || !strings.HasSuffix(ps[0].Ref, "/slow/app:v1") || ps[0].Layers[0].Size == 0 {
			t.Errorf("Pulls() during the pull: %+v", ps)
		}
	default:
		t.Error("no progress with bytes received was reported during a throttled pull")
	}
	if ps := s.Pulls(); len(ps) != 0 {
		t.Errorf("Pulls() after the pull: %+v", ps)
	}
}

func TestPlainHTTPOnlyForLoopbackAndConfiguredRegistries(t *testing.T) {
	tr := newRegistryTransport([]string{"registry.lan:5000", "10.1.2.3"})
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "127.9.9.9": true,
		"registry.lan:5000": true, "10.1.2.3:443": true, "10.1.2.3": true,
		"registry.lan:6000": false, "10.0.0.1:5000": false, "192.168.1.1:5000": false, "example.com": false,
	} {
		if got := tr.allowsInsecure(host); got != want {
			t.Errorf("allowsInsecure(%q) = %v, want %v", host, got, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://10.0.0.1:5000/v2/", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errPlainHTTP) || retryable(err) {
		t.Errorf("plain HTTP to a private address: %v (retryable %v); want refused, not retried", err, retryable(err))
	}
}

func TestPullRefusesHostileLayers(t *testing.T) {
	reg := harness.StartRegistry(t)
	bb := harness.Layer(t, harness.BusyboxTar(t))
	escape := harness.Layer(t, harness.Tar(harness.Entry{Name: "../../../../../../tmp/dutchman-escaped", Body: "evil"}))
	harness.Push(t, reg.Ref("hostile/dotdot:v1"), harness.Image(t, harness.Amd64, bb, escape))
	linkOut := harness.Layer(t, harness.Tar(harness.Entry{Name: "etc/shadow-copy", Type: tar.TypeLink, Link: "../../../../etc/shadow"}))
	harness.Push(t, reg.Ref("hostile/hardlink:v1"), harness.Image(t, harness.Amd64, bb, linkOut))
	symlinkThrough := harness.Layer(t, harness.Tar(
		harness.Entry{Name: "tmp/", Type: tar.TypeDir},
		harness.Entry{Name: "up", Type: tar.TypeSymlink, Link: "/tmp"},
		harness.Entry{Name: "up/dutchman-escaped", Body: "evil"},
	))
	harness.Push(t, reg.Ref("hostile/symlink:v1"), harness.Image(t, harness.Amd64, bb, symlinkThrough))

	s := newStore(t)
	for _, name := range []string{"hostile/dotdot:v1", "hostile/hardlink:v1"} {
		_, err := s.Pull(ctx, reg.Ref(name))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "escapes the layer root") {
			t.Errorf("pull %s: %v; want the layer refused as escaping", name, err)
		}
	}
	noImages(t, s)
	// A symlink is followed only inside the layer: the file lands in the layer's /tmp.
	im, err := s.Pull(ctx, reg.Ref("hostile/symlink:v1"))
	if err != nil {
		t.Fatal(err)
	}
	top, _ := v1.NewHash(im.Layers[1].ChainID)
	if got := readFile(t, filepath.Join(s.snaps.path(top), "tmp/dutchman-escaped")); got != "evil" {
		t.Errorf("the entry behind the symlink is not in the layer's own tmp/: %q", got)
	}
	if exists("/tmp/dutchman-escaped") {
		os.Remove("/tmp/dutchman-escaped")
		t.Fatal("a layer wrote /tmp/dutchman-escaped on the host")
	}
}

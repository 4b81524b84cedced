package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// tarDir tars the files of dir, as an image archive.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

// TestMultiPlatformArchive loads an archive whose named index has two platforms (and an
// attestation, as BuildKit writes): both images are stored, the host's under the name;
// the other is held by the name (prune leaves it, rmi of it alone is refused), a tag
// of the name holds it too, and it goes with the last name.
func TestMultiPlatformArchive(t *testing.T) {
	s := newStore(t)
	bb := harness.Layer(t, harness.BusyboxTar(t))
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var digests []v1.Hash
	for _, p := range []v1.Platform{harness.Amd64, harness.Arm64, {OS: "unknown", Architecture: "unknown"}} {
		p := p
		img := harness.Image(t, p, bb, harness.Layer(t, harness.Tar(harness.Entry{Name: "etc/platform", Body: p.Architecture + "\n"})))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		d, _ := img.Digest()
		digests = append(digests, d)
	}
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationImageName: "registry.lan/team/app:v1"})); err != nil {
		t.Fatal(err)
	}
	loaded, err := s.Load(ctx, bytes.NewReader(tarDir(t, dir)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded.Names, []string{"registry.lan/team/app:v1"}) || len(loaded.IDs) != 0 {
		t.Errorf("loaded %+v", loaded)
	}
	list, _ := s.List(ctx)
	if len(list) != 2 {
		t.Fatalf("%d images stored; want the two platforms' (not the attestation)", len(list))
	}
	im, err := s.Get(ctx, "registry.lan/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if im.Digest != digests[0].String() || !slices.Equal(im.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("the name's image %s, platforms %v", im.Digest, im.Platforms)
	}
	arm, err := s.Get(ctx, digests[1].String())
	if err != nil || !slices.Equal(arm.PlatformOf, []string{"registry.lan/team/app:v1"}) || len(arm.Names) != 0 {
		t.Fatalf("the arm64 image: %+v, %v", arm, err)
	}

	if del, err := s.Prune(ctx); err != nil || len(del.Deleted) != 0 {
		t.Errorf("prune removed %v (%v); the arm64 image is the name's", del, err)
	}
	if _, err := s.Delete(ctx, digests[1].String(), false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "linux/arm64/v8 image of registry.lan/team/app:v1") {
		t.Errorf("rmi of the arm64 image alone: %v", err)
	}
	if err := s.Tag(ctx, "registry.lan/team/app:v1", "app:copy"); err != nil {
		t.Fatal(err)
	}
	if del, err := s.Delete(ctx, "registry.lan/team/app:v1", false); err != nil || len(del.Deleted) != 0 {
		t.Errorf("removing one of two names deleted %v (%v)", del, err)
	}
	if arm, _ := s.Get(ctx, digests[1].String()); arm == nil || !slices.Equal(arm.PlatformOf, []string{"docker.io/library/app:copy"}) {
		t.Errorf("after the first name went, the arm64 image is held by %v", arm)
	}
	del, err := s.Delete(ctx, "app:copy", false)
	if err != nil || len(del.Deleted) != 2 {
		t.Errorf("removing the last name deleted %v (%v); want both images", del, err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("%d images left", len(list))
	}
}

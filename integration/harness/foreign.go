//go:build linux

package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	foreignMu  sync.Mutex
	foreignBin = map[string][]byte{}
)

// ForeignBusybox is /bin/busybox of Debian's busybox-static for another architecture
// (a Debian name: arm64, armhf, ...), downloaded once per test process with apt-get
// from the host's Debian sources. The host's apt configuration is left alone: the
// foreign package lists go to a directory of the test process's own.
func ForeignBusybox(t testing.TB, arch string) []byte {
	t.Helper()
	foreignMu.Lock()
	defer foreignMu.Unlock()
	if b, ok := foreignBin[arch]; ok {
		return b
	}
	dir := filepath.Join(processDir, "apt-"+arch)
	lists := filepath.Join(dir, "lists")
	for _, d := range []string{filepath.Join(lists, "partial"), filepath.Join(dir, "cache", "archives", "partial"), filepath.Join(dir, "deb")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	apt := func(args ...string) {
		t.Helper()
		cmd := exec.Command("apt-get", append([]string{"-q", "-o", "Dir::State::Lists=" + lists, "-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
			"-o", "APT::Architecture=" + arch, "-o", "APT::Architectures=" + arch, "-o", "APT::Sandbox::User=root"}, args...)...)
		cmd.Dir = filepath.Join(dir, "deb")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s for %s: %v\n%s", strings.Join(args, " "), arch, err, out)
		}
	}
	apt("update")
	apt("download", "busybox-static:"+arch)
	debs, _ := filepath.Glob(filepath.Join(dir, "deb", "busybox-static_*_"+arch+".deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download busybox-static:%s left %d .deb files", arch, len(debs))
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	b, err := os.ReadFile(filepath.Join(root, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	foreignBin[arch] = b
	return b
}

// PushBusyboxIndex pushes to ref a multi-platform busybox: the host's busybox for
// linux/amd64 and Debian's arm64 busybox for linux/arm64, each with the same applets.
func PushBusyboxIndex(t testing.TB, ref string) v1.Hash {
	t.Helper()
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	applets := strings.Fields(string(out))
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []struct {
		platform v1.Platform
		rootfs   []byte
	}{
		{Amd64, BusyboxTar(t)},
		{Arm64, busyboxRootfs(ForeignBusybox(t, "arm64"), applets)},
	} {
		img := Image(t, p.platform, Layer(t, p.rootfs))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p.platform}})
	}
	d := PushIndex(t, ref, idx)
	return d
}

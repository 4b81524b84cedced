package vm

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

func TestModuleClosure(t *testing.T) {
	deps := map[string][]string{
		"virtio_mmio": {"virtio", "virtio_ring"},
		"virtio":      {"virtio_ring"},
		"virtio_ring": nil,
		"virtiofs":    {"fuse", "virtio", "virtio_ring"},
		"fuse":        nil,
		"broken":      {"missing"},
	}
	m := &moduleSet{files: map[string]string{}, builtin: map[string]bool{"fuse": true},
		depends: func(p string) ([]string, error) { return deps[moduleName(p)], nil }}
	for name := range deps {
		if name != "fuse" {
			m.files[name] = "/m/" + strings.ReplaceAll(name, "_", "-") + ".ko"
		}
	}
	got, err := m.closure([]string{"virtiofs", "virtio_mmio"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/m/virtio-ring.ko", "/m/virtio.ko", "/m/virtiofs.ko", "/m/virtio-mmio.ko"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("closure: %v, want %v (each after its dependencies, a built-in one left out)", got, want)
	}
	if _, err := m.closure([]string{"broken"}); err == nil || !strings.Contains(err.Error(), "module broken needs missing") {
		t.Errorf("a missing dependency: %v", err)
	}
	if _, err := m.closure([]string{"nonesuch"}); err == nil || !strings.Contains(err.Error(), "no module nonesuch") {
		t.Errorf("a missing module: %v", err)
	}
}

// readCpio reads a newc archive back: name → (mode, data).
func readCpio(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	off := 0
	field := func(i int) int {
		n, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", off, err)
		}
		return int(n)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("no magic at %d", off)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = align(off + 110 + namesize)
		data := string(b[off : off+size])
		off = align(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out[name] = fmt.Sprintf("%o %s", mode, data)
	}
}

func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "virtio.ko")
	os.WriteFile(mod, []byte("module bytes"), 0o644)
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, []byte("agent binary"), []string{mod}); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	for name, want := range map[string]string{
		"init":                  "100755 agent binary",
		"dev/console":           "20600 ",
		"lib/modules/order":     "100644 virtio.ko\n",
		"lib/modules/virtio.ko": "100644 module bytes",
		"proc":                  "40755 ",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
}

func tarOf(t *testing.T, entries ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return &buf
}

func TestUntarModulesRefusesHostileEntries(t *testing.T) {
	ok := &tar.Header{Name: "kernel/drivers/virtio.ko", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}
	for _, tc := range []struct {
		name  string
		entry *tar.Header
		words string
	}{
		{"parent", &tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1}, "leads out"},
		{"deep parent", &tar.Header{Name: "kernel/../../escape", Typeflag: tar.TypeReg, Size: 1}, "leads out"},
		{"absolute", &tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg, Size: 1}, "leads out"},
		{"symlink", &tar.Header{Name: "kernel/link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, "neither a file nor a directory"},
		{"hard link", &tar.Header{Name: "kernel/hard", Typeflag: tar.TypeLink, Linkname: "kernel/drivers/virtio.ko"}, "neither a file nor a directory"},
		{"device", &tar.Header{Name: "kernel/dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, "neither a file nor a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "modules")
			err := untarModules(tarOf(t, ok, tc.entry), dir, &unpackBudget{left: maxModulesSize})
			if err == nil || !strings.Contains(err.Error(), tc.words) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("untar: %v; want an invalid-argument error saying %q", err, tc.words)
			}
			if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
				t.Error("a file was written out of the modules directory")
			}
		})
	}
	dir := t.TempDir()
	if err := untarModules(tarOf(t, ok), dir, &unpackBudget{left: 2}); err == nil || !strings.Contains(err.Error(), "1 GiB") {
		t.Errorf("3 bytes with 2 left to unpack: %v", err)
	}
	if err := untarModules(tarOf(t, ok), dir, &unpackBudget{left: maxModulesSize}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "kernel/drivers/virtio.ko")); err != nil || string(b) != "xxx" {
		t.Errorf("extracted module: %q %v", b, err)
	}
}

func TestKernelDependency(t *testing.T) {
	for in, want := range map[string]string{
		"linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)":                    "linux-image-6.1.0-56-cloud-amd64",
		"initramfs-tools | linux-initramfs-tool, linux-image-6.1.0-9-amd64": "linux-image-6.1.0-9-amd64",
		"kmod, libc6": "",
	} {
		if got := kernelDependency(in); got != want {
			t.Errorf("kernelDependency(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKernelNames(t *testing.T) {
	for _, name := range []string{"", "..", "../x", "a/b", "ctl", "error", "default", "-x", strings.Repeat("a", 200)} {
		if checkKernelName(name) == nil {
			t.Errorf("kernel name %q accepted", name)
		}
	}
	for _, name := range []string{"6.1.0-56-cloud-amd64", "6.12.3+deb13-amd64"} {
		if err := checkKernelName(name); err != nil {
			t.Errorf("kernel name %q: %v", name, err)
		}
	}
}

func TestKernelCacheFromATree(t *testing.T) {
	root := t.TempDir()
	ks, err := NewKernels(filepath.Join(root, "kernels"), filepath.Join(root, "agent"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Get(""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("default of an empty cache: %v", err)
	}
	// A package's tree with no kernel image.
	tree := filepath.Join(root, "tree")
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	if _, err := ks.importTree(tree, "test", filepath.Join(root, "kernels", ".import-1")); err == nil || !strings.Contains(err.Error(), "not one") {
		t.Errorf("import of a tree without vmlinuz: %v", err)
	}
	if err := ks.SetDefault("6.1.0-1-test"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("default of a missing kernel: %v", err)
	}
	if err := ks.Remove("../kernels"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("rm ../kernels: %v", err)
	}
	// A kernel cached without a module the agent now loads says how to mend it.
	old := &Kernel{Name: "6.1.0-1-test", Source: "debian:linux-image-test"}
	os.MkdirAll(filepath.Join(root, "kernels", old.Name, "modules"), 0o755)
	os.WriteFile(filepath.Join(root, "kernels", old.Name, "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(root, "agent"), []byte("agent"), 0o755)
	if _, _, err := ks.Boot(old); err == nil || !strings.Contains(err.Error(), "dutchman kernel pull debian:linux-image-test") {
		t.Errorf("boot of a kernel without the agent's modules: %v", err)
	}
}

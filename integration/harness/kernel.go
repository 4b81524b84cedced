//go:build linux

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	kernelOnce sync.Once
	kernelDeb  string
	kernelErr  error
)

// KernelPackage is the Debian package of the guest kernel the vm tests use.
const KernelPackage = "linux-image-cloud-amd64"

// KernelDeb downloads the kernel package KernelPackage depends on (apt-get download)
// once per test process, and returns the .deb's path.
func KernelDeb(t testing.TB) string {
	t.Helper()
	kernelOnce.Do(func() {
		out, err := exec.Command("apt-cache", "depends", KernelPackage).Output()
		if err != nil {
			kernelErr = fmt.Errorf("apt-cache depends %s: %v", KernelPackage, err)
			return
		}
		var pkg string
		for _, line := range strings.Split(string(out), "\n") {
			if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
				pkg = dep
			}
		}
		if pkg == "" {
			kernelErr = fmt.Errorf("%s depends on no kernel package:\n%s", KernelPackage, out)
			return
		}
		dir := filepath.Join(processDir, "kernel")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			kernelErr = err
			return
		}
		cmd := exec.Command("apt-get", "download", "-q", pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			kernelErr = fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
			return
		}
		debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(debs) != 1 {
			kernelErr = fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
			return
		}
		kernelDeb = debs[0]
	})
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	return kernelDeb
}

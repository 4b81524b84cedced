//go:build linux

package integration

import (
	"strings"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// vmDaemon starts a daemon whose vm containers boot the kernel of the Debian package.
func vmDaemon(t *testing.T, opts ...harness.DaemonOption) *harness.Daemon {
	t.Helper()
	deb := harness.KernelDeb(t)
	return harness.StartDaemon(t, append([]harness.DaemonOption{harness.WithArgs("--vm-kernel", deb)}, opts...)...)
}

func TestVMRun(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := vmDaemon(t, harness.WithTree())
	res := d.Run("run", "--runtime", "vm", "--name", "v1", ims.Busybox, "sh", "-c", "echo hello from the vm; uname -r; hostname; exit 3")
	t.Logf("%+v", res)
	if res.Code != 3 {
		t.Errorf("exit code %d, want 3; stderr %s", res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "hello from the vm") || !strings.Contains(res.Stdout, "cloud-amd64") {
		t.Errorf("output %q", res.Stdout)
	}
}

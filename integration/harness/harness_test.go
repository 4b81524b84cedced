//go:build linux

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { Main(m, "docker-registry") }

// The harness's own check: the registry starts, takes the test images, serves them, and
// logs the blob downloads that tests count.
func TestRegistryServesPushedImages(t *testing.T) {
	reg := StartRegistry(t)
	ims := PushTestImages(t, reg)
	if ims.BusyboxDigest.Hex == "" || ims.MultiDigest.Hex == "" {
		t.Fatal("no digests")
	}
	if _, err := os.Stat(reg.BlobPath(ims.BusyboxLayer.String())); err != nil {
		t.Fatalf("busybox layer not in registry storage: %v", err)
	}
	before := reg.BlobGets(ims.BusyboxLayer.String())
	resp, err := httpGet("http://" + reg.Addr + "/v2/test/busybox/blobs/" + ims.BusyboxLayer.String())
	if err != nil || resp != 200 {
		t.Fatalf("GET blob: %d %v", resp, err)
	}
	if got := reg.BlobGets(ims.BusyboxLayer.String()); got != before+1 {
		t.Errorf("BlobGets = %d after one GET, want %d", got, before+1)
	}
}

// A crashed test process leaves a directory whose pid is dead, a process and a mount
// that refer to it. CleanLeftovers must remove all three.
func TestCleanLeftoversOfACrashedRun(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(Base, strconv.Itoa(dead.Process.Pid))
	if alive(dead.Process.Pid) {
		t.Skipf("pid %d was reused at once; cannot play a dead test process", dead.Process.Pid)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// Its command line mentions the directory, as a registry's or a daemon's does.
	logPath := filepath.Join(dir, "log")
	os.WriteFile(logPath, nil, 0o644)
	orphan := exec.Command("tail", "-f", logPath)
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { orphan.Wait(); close(done) }()

	if err := CleanLeftovers(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		orphan.Process.Kill()
		t.Error("the leftover process was not stopped")
	}
	if len(mountsUnder(dir)) != 0 {
		unix.Unmount(mnt, unix.MNT_DETACH)
		t.Error("the leftover mount was not unmounted")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the leftover directory is still there: %v", err)
	}
}

// TestDeleteNetworkRules deletes the rules a container's CNI plugins left (as the bridge
// plugin writes them: a comment naming the container, a chain of its own).
func TestDeleteNetworkRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("iptables needs root; make test runs as root")
	}
	id := fmt.Sprintf("harnesstest%d", time.Now().UnixNano())
	chain := "CNI-HT" + id[len(id)-8:]
	for _, args := range [][]string{
		{"-t", "nat", "-N", chain},
		{"-t", "nat", "-A", chain, "-d", "10.250.0.0/24", "-m", "comment", "--comment", `name: "bridge" id: "` + id + `"`, "-j", "ACCEPT"},
		{"-t", "nat", "-A", "POSTROUTING", "-s", "10.250.0.9/32", "-m", "comment", "--comment", `name: "bridge" id: "` + id + `"`, "-j", chain},
	} {
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v %s", args, err, out)
		}
	}
	deleteNetworkRules(id)
	out, _ := exec.Command("iptables-save", "-t", "nat").Output()
	if strings.Contains(string(out), id) || strings.Contains(string(out), chain) {
		t.Errorf("rules left:\n%s", out)
	}
}

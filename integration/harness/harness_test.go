//go:build linux

package harness

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	cleanup, err := Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

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

//go:build linux

// Package integration runs the built dutchman binary end to end against real components:
// the CNCF registry, overlayfs, skopeo. See harness for what it starts and how it cleans up.
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func TestMain(m *testing.M) {
	if err := harness.NeedRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "integration tests:", err)
		os.Exit(1)
	}
	if err := harness.Need("docker-registry", "skopeo", "script"); err != nil {
		fmt.Fprintln(os.Stderr, "integration tests:", err)
		os.Exit(1)
	}
	cleanup, err := harness.Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

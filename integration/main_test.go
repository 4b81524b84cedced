//go:build linux

// Package integration runs the built dutchman binary end to end against real components:
// the CNCF registry, overlayfs, skopeo. See harness for what it starts and how it cleans up.
package integration

import (
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func TestMain(m *testing.M) {
	harness.Main(m, "docker-registry", "skopeo", "script", "vim", "rsync", "setfattr", "getfattr")
}

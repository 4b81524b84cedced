//go:build linux

package oci

import (
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// The runc tests need root and runc; the harness checks both and cleans what a crashed
// run left under its directory (runc state, container processes).
func TestMain(m *testing.M) { harness.Main(m, "runc") }

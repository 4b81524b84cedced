package images

import (
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "docker-registry") }

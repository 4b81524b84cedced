package images

import (
	"fmt"
	"os"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func TestMain(m *testing.M) {
	if err := harness.NeedRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "images tests:", err)
		os.Exit(1)
	}
	cleanup, err := harness.Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "images tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

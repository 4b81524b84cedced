package images

import (
	"os"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// BenchmarkPullBig pulls the image DUTCHMAN_BENCH_IMAGE names (bench/run's big image,
// say) into an empty store each time, to profile a pull:
//
//	DUTCHMAN_BENCH_IMAGE=127.0.0.1:5000/big:latest go test -run - -bench PullBig -cpuprofile cpu.out ./images
func BenchmarkPullBig(b *testing.B) {
	ref := os.Getenv("DUTCHMAN_BENCH_IMAGE")
	if ref == "" {
		b.Skip("DUTCHMAN_BENCH_IMAGE is not set: it names the image to pull")
	}
	for b.Loop() {
		b.StopTimer()
		s := newStoreAt(b, harness.Dir(b))
		b.StartTimer()
		if _, err := s.Pull(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}

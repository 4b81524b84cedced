//go:build linux

// Command imagegen builds the benchmark images offline and pushes them to a registry:
//
//	busybox  one layer: /bin/busybox (busybox-static) and its applet links
//	big      five layers of 40 MiB each, half seeded-random and half repetitive bytes,
//	         the same shape as the peer benchmarks' big:latest (about 100 MiB gzipped)
//
// Usage: go run ./bench/imagegen -registry 127.0.0.1:5000 [-busybox-tar FILE] busybox big
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// tb lets the harness's image builders run outside a test: failures end the program.
type tb struct{ testing.TB }

func (tb) Helper()                        {}
func (tb) Fatal(args ...any)              { log.Fatal(args...) }
func (tb) Fatalf(format string, a ...any) { log.Fatalf(format, a...) }

func main() {
	registry := flag.String("registry", "127.0.0.1:5000", "registry host:port (plain HTTP)")
	busyboxTar := flag.String("busybox-tar", "", "also write the busybox image's layer (an uncompressed tar) to this file, for a raw runc bundle")
	layers := flag.Int("layers", 5, "layers of the big image")
	mib := flag.Int("mib", 40, "MiB per layer of the big image")
	flag.Parse()
	t := tb{}
	if *busyboxTar != "" {
		if err := os.WriteFile(*busyboxTar, harness.BusyboxTar(t), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	for _, name := range flag.Args() {
		ref := *registry + "/" + name + ":latest"
		var d v1.Hash
		switch name {
		case "busybox":
			d = harness.Push(t, ref, harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t))))
		case "big":
			var ls []v1.Layer
			for i := range *layers {
				ls = append(ls, harness.RandomLayer(t, int64(i), *mib/4, 4<<20))
			}
			d = harness.Push(t, ref, harness.Image(t, harness.Amd64, ls...))
		default:
			fmt.Fprintf(os.Stderr, "imagegen: unknown image %q (busybox, big)\n", name)
			os.Exit(2)
		}
		fmt.Printf("%s %s\n", ref, d)
	}
}

package logs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The benchmark log: 1e6 lines of 100 bytes (100 MB), the load of the podman k8s-file
// comparison in bench/, handed to Write the way the shim reads a busy pipe: 64 KiB at
// a time, regardless of line boundaries.
const (
	benchLines = 1_000_000
	benchLine  = 100
	benchChunk = 64 << 10
)

func benchOutput() []byte {
	line := make([]byte, benchLine)
	for i := range line {
		line[i] = 'a' + byte(i%26)
	}
	line[benchLine-1] = '\n'
	out := make([]byte, 0, benchLines*benchLine)
	for range benchLines {
		out = append(out, line...)
	}
	return out
}

func writeBench(b *testing.B, dir string, out []byte) {
	w, err := OpenWriter(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for p := out; len(p) > 0; {
		n := min(len(p), benchChunk)
		if err := w.Write(Stdout, p[:n], now); err != nil {
			b.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkWrite100MB(b *testing.B) {
	out := benchOutput()
	root := b.TempDir()
	b.SetBytes(int64(len(out)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(root, "logs")
		writeBench(b, dir, out)
		b.StopTimer()
		// Removing the files drops their dirty pages, so iterations do not pile up
		// writeback for the next to wait on.
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkRead100MB(b *testing.B) {
	out := benchOutput()
	dir := filepath.Join(b.TempDir(), "logs")
	writeBench(b, dir, out)
	b.SetBytes(int64(len(out)))
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := Read(context.Background(), dir, ReadOptions{Tail: -1}, func(e Entry) error {
			n += len(e.Data)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != len(out) {
			b.Fatalf("read %d bytes, want %d", n, len(out))
		}
	}
}

// BenchmarkTail10 is `dutchman logs --tail 10` on the benchmark log.
func BenchmarkTail10(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "logs")
	writeBench(b, dir, benchOutput())
	for b.Loop() {
		n := 0
		err := Read(context.Background(), dir, ReadOptions{Tail: 10}, func(e Entry) error {
			n += len(e.Data)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != 10*benchLine {
			b.Fatalf("read %d bytes, want %d", n, 10*benchLine)
		}
	}
}

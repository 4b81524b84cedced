package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// generationFiles returns the names of the files in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// checkGeneration checks that generation k of dir is self-contained: its index covers
// its output exactly, in order, and demultiplexing output by the index gives its
// stdout and stderr files.
func checkGeneration(t testing.TB, dir string, k, maxSize int) {
	t.Helper()
	out := readFile(t, dir, filepath.Base(genPath(dir, outputName, k)))
	idx := readFile(t, dir, filepath.Base(genPath(dir, indexName, k)))
	if len(out) > maxSize {
		t.Errorf("generation %d: output has %d bytes, more than MaxSize %d", k, len(out), maxSize)
	}
	if len(idx)%recordSize != 0 {
		t.Errorf("generation %d: index of %d bytes", k, len(idx))
	}
	var demux [numStreams]strings.Builder
	off := int64(0)
	for b := []byte(idx); len(b) >= recordSize; b = b[recordSize:] {
		r := getRecord(b)
		if r.off != off || !r.stream.valid() || r.length == 0 {
			t.Fatalf("generation %d: record %+v after offset %d", k, r, off)
		}
		demux[r.stream].WriteString(out[r.off:r.end()])
		off = r.end()
	}
	if off != int64(len(out)) {
		t.Errorf("generation %d: index covers %d bytes of %d", k, off, len(out))
	}
	for s, name := range map[Stream]string{Stdout: stdoutName, Stderr: stderrName} {
		if got := readFile(t, dir, filepath.Base(genPath(dir, name, k))); got != demux[s].String() {
			t.Errorf("generation %d: %s differs from its part of output", k, name)
		}
	}
}

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opt      Options
		sizes    []int // chunk sizes, cycled
		n        int
		wantGens int
	}{
		{"keep 3", Options{MaxSize: 1000, MaxFiles: 3}, []int{1, 37, 120, 5, 64}, 300, 3},
		{"keep 1", Options{MaxSize: 1000, MaxFiles: 1}, []int{33, 7}, 300, 1},
		{"default files", Options{MaxSize: 500}, []int{100}, 50, 2},
		{"chunks larger than MaxSize", Options{MaxSize: 100, MaxFiles: 3}, []int{250, 30}, 20, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cs []chunk
			var all strings.Builder
			for i := range tc.n {
				size := tc.sizes[i%len(tc.sizes)]
				data := strings.Repeat(strconv.Itoa(i%10), size-1) + "\n"
				s := Stdout
				if i%3 == 1 {
					s = Stderr
				}
				cs = append(cs, chunk{s: s, data: data, t: at(i).UnixNano()})
				all.WriteString(data)
			}
			dir := writeLog(t, tc.opt, cs)

			var want []string
			for k := range tc.wantGens {
				for _, b := range rotationOrder() {
					want = append(want, filepath.Base(genPath(dir, b, k)))
				}
			}
			slices.Sort(want)
			if got := dirNames(t, dir); !slices.Equal(got, want) {
				t.Fatalf("files %v, want %v", got, want)
			}
			for k := range tc.wantGens {
				checkGeneration(t, dir, k, int(tc.opt.MaxSize))
			}
			// What is kept is exactly the end of what was written, and Read yields it with
			// streams and times.
			got := readAll(t, dir, ReadOptions{Tail: -1})
			var kept strings.Builder
			for _, c := range got {
				kept.WriteString(c.data)
			}
			if !strings.HasSuffix(all.String(), kept.String()) {
				t.Fatalf("kept output is not the end of the written output")
			}
			if kept.Len() < int(tc.opt.MaxSize)*(tc.wantGens-1) {
				t.Errorf("kept %d bytes, want at least %d", kept.Len(), int(tc.opt.MaxSize)*(tc.wantGens-1))
			}
			equalChunks(t, got, suffixChunks(cs, kept.Len()))
		})
	}
}

// suffixChunks returns the last n bytes of cs as chunks.
func suffixChunks(cs []chunk, n int) []chunk {
	var out []chunk
	for i := len(cs) - 1; i >= 0 && n > 0; i-- {
		c := cs[i]
		if len(c.data) > n {
			c.data = c.data[len(c.data)-n:]
		}
		n -= len(c.data)
		out = append(out, c)
	}
	slices.Reverse(out)
	return out
}

// TestRotationFewerFiles: a Writer reopened with a smaller MaxFiles drops the
// generations it no longer keeps at its first rotation.
func TestRotationFewerFiles(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, Options{MaxSize: 10, MaxFiles: 5})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, chunks("o:000000000\n", "o:111111111\n", "o:222222222\n", "o:333333333\n", "o:444444444\n"))
	w.Close()
	if n := len(dirNames(t, dir)); n != 20 {
		t.Fatalf("%d files, want 20", n)
	}
	w, err = OpenWriter(dir, Options{MaxSize: 10, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, chunks("o:555555555\n"))
	w.Close()
	want := []string{"index", "index.1", "output", "output.1", "stderr", "stderr.1", "stdout", "stdout.1"}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	if got := readFile(t, dir, "output.1") + readFile(t, dir, "output"); got != "444444444\n555555555\n" {
		t.Errorf("kept %q", got)
	}
}

// TestReadDuringRotation reads (without following) while a Writer rotates as fast as
// it can: every read must see a contiguous run of the output, with every retained
// generation, none twice.
func TestReadDuringRotation(t *testing.T) {
	dir := t.TempDir()
	const (
		line    = 10 // "%09d\n"
		perGen  = 8  // lines: small, so rotations are frequent enough to race
		keepGen = 3
	)
	w, err := OpenWriter(dir, Options{MaxSize: perGen * line, MaxFiles: keepGen})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	written := make(chan int, 1)
	wg.Go(func() {
		defer w.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				written <- i
				return
			default:
			}
			if err := w.Write(Stdout, fmt.Appendf(nil, "%09d\n", i), time.Now()); err != nil {
				t.Error(err)
				written <- i
				return
			}
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	reads, rotatedReads := 0, 0
	for time.Now().Before(deadline) && reads < 2000 {
		var buf []byte
		err := Read(context.Background(), dir, ReadOptions{Tail: -1}, func(e Entry) error {
			buf = append(buf, e.Data...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if len(buf)%line != 0 {
			t.Fatalf("read %d bytes, not whole lines", len(buf))
		}
		first := -1
		for j := 0; j < len(buf); j += line {
			n, err := strconv.Atoi(string(buf[j : j+line-1]))
			if err != nil {
				t.Fatalf("bad line %q", buf[j:j+line])
			}
			if first < 0 {
				first = n
			} else if n != first+j/line {
				t.Fatalf("line %d after %d: not contiguous", n, first+j/line-1)
			}
		}
		if first > 0 {
			rotatedReads++
			// Once rotating, keepGen-1 full generations are always there, even
			// mid-rotation.
			if len(buf) < (keepGen-1)*perGen*line {
				t.Fatalf("read %d lines from %d: generations missed", len(buf)/line, first)
			}
		}
	}
	close(stop)
	wg.Wait()
	n := <-written
	t.Logf("%d reads (%d after rotations began) while %d lines were written", reads, rotatedReads, n)
	if rotatedReads == 0 {
		t.Error("no read raced a rotation")
	}
}

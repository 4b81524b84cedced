package logs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCrash damages a log the ways a crash can, then checks that Read yields what is
// whole and that a new Writer repairs the files and continues cleanly.
func TestCrash(t *testing.T) {
	cs := chunks("o:one\n", "e:two\n", "o:three\n", "e:four\n", "o:five\n")
	more := chunks("o:six\n", "e:seven\n")
	for i := range more {
		more[i].t += 1e9
	}
	appendTo := func(t *testing.T, dir, name, data string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
	}
	truncate := func(t *testing.T, dir, name string, by int64) {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, name), fi.Size()-by); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		// readable: what Read yields from the damaged log; kept: what survives repair.
		readable, kept []chunk
	}{
		{
			name:     "index record torn",
			damage:   func(t *testing.T, dir string) { truncate(t, dir, "index", 10) },
			readable: cs[:4],
			kept:     cs[:4],
		},
		{
			name:     "index record barely started",
			damage:   func(t *testing.T, dir string) { truncate(t, dir, "index", recordSize-1) },
			readable: cs[:4],
			kept:     cs[:4],
		},
		{
			name: "data written, record not",
			damage: func(t *testing.T, dir string) {
				appendTo(t, dir, "output", "six\n")
				appendTo(t, dir, "stdout", "six\n")
			},
			readable: cs,
			kept:     cs,
		},
		{
			name:     "output written, stream file not",
			damage:   func(t *testing.T, dir string) { appendTo(t, dir, "output", "six\n") },
			readable: cs,
			kept:     cs,
		},
		{
			// The machine crashed: the index reached the disk, the data not all of it.
			name:     "record past the data",
			damage:   func(t *testing.T, dir string) { truncate(t, dir, "output", 3) },
			readable: append(cs[:4:4], chunk{Stdout, "fi", cs[4].t}),
			kept:     cs[:4],
		},
		{
			name:     "records past the data",
			damage:   func(t *testing.T, dir string) { truncate(t, dir, "output", 12) },
			readable: append(cs[:2:2], chunk{Stdout, "thre", cs[2].t}),
			kept:     cs[:2],
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLog(t, Options{}, cs)
			tc.damage(t, dir)
			equalChunks(t, readAll(t, dir, ReadOptions{Tail: -1}), tc.readable)
			equalChunks(t, readAll(t, dir, ReadOptions{Tail: 1}), tc.readable[len(tc.readable)-1:])

			w, err := OpenWriter(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, more)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			equalChunks(t, readAll(t, dir, ReadOptions{Tail: -1}), append(tc.kept[:len(tc.kept):len(tc.kept)], more...))
			checkGeneration(t, dir, 0, defaultMaxSize)
		})
	}
}

// TestCrashDuringRotation stops a rotation after each of its steps, as a crash would,
// then checks that a new Writer completes it: every generation has its files and all
// the output is still there.
func TestCrashDuringRotation(t *testing.T) {
	opt := Options{MaxSize: 10, MaxFiles: 5}
	cs := chunks("o:000000000\n"[:10], "e:111111111\n"[:10], "o:222222222\n"[:10])
	more := chunks("o:333333333\n"[:10], "o:444444444\n"[:10])
	for i := range more {
		more[i].t += 1e9
	}
	// The steps of the rotation the next Write would do, in the Writer's order.
	type step struct{ from, to string }
	var steps []step
	for _, k := range []int{2, 1, 0} {
		for _, b := range rotationOrder() {
			steps = append(steps, step{filepath.Base(genPath("", b, k)), filepath.Base(genPath("", b, k+1))})
		}
	}
	for _, b := range []string{indexName, stdoutName, stderrName, outputName} {
		steps = append(steps, step{to: b})
	}
	for done := 0; done < len(steps); done++ {
		t.Run(steps[done].to, func(t *testing.T) {
			dir := writeLog(t, opt, cs)
			for _, s := range steps[:done+1] {
				var err error
				if s.from == "" {
					err = os.WriteFile(filepath.Join(dir, s.to), nil, 0o600)
				} else {
					err = os.Rename(filepath.Join(dir, s.from), filepath.Join(dir, s.to))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// Readers of the half-rotated directory cope (what they see of it may lack
			// the generation caught halfway).
			readAll(t, dir, ReadOptions{Tail: -1})

			w, err := OpenWriter(dir, opt)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, more)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			equalChunks(t, readAll(t, dir, ReadOptions{Tail: -1}), append(cs[:len(cs):len(cs)], more...))
			ks, err := listGenerations(dir, rotationOrder()...)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				checkGeneration(t, dir, k, int(opt.MaxSize))
			}
		})
	}
}

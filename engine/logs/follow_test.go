package logs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// randomChunks returns n chunks of random streams and sizes (1 to maxLen bytes), each
// naming its number so a failure is readable, with times from first on.
func randomChunks(rng *rand.Rand, first, n, maxLen int) []chunk {
	cs := make([]chunk, n)
	for i := range cs {
		s := Stdout
		if rng.IntN(3) == 0 {
			s = Stderr
		}
		data := fmt.Sprintf("<%d>", first+i)
		for len(data) < 1+rng.IntN(maxLen) {
			data += "."
		}
		if rng.IntN(2) == 0 {
			data += "\n"
		}
		cs[i] = chunk{s: s, data: data, t: at(first + i).UnixNano()}
	}
	return cs
}

// follower runs a following Read in the background and collects what it yields.
type follower struct {
	mu       sync.Mutex
	got      []chunk
	received atomic.Int64 // bytes
	err      chan error
}

func follow(ctx context.Context, dir string, opt ReadOptions) *follower {
	f := &follower{err: make(chan error, 1)}
	opt.Follow = true
	go func() {
		f.err <- Read(ctx, dir, opt, func(e Entry) error {
			f.mu.Lock()
			f.got = append(f.got, chunk{s: e.Stream, data: string(e.Data), t: e.Time.UnixNano()})
			f.mu.Unlock()
			f.received.Add(int64(len(e.Data)))
			return nil
		})
	}()
	return f
}

// wait returns Read's result, failing the test if it takes more than d.
func (f *follower) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-f.err:
		return err
	case <-time.After(d):
		t.Fatalf("Read did not return within %v", d)
		return nil
	}
}

func (f *follower) chunks() []chunk {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]chunk(nil), f.got...)
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opt    Options
		before int // chunks written before the follower starts
		after  int // chunks written while it follows
		tail   int
		// paced: the writer waits for the follower whenever it is half a generation
		// ahead, so that rotation never removes what the follower has not opened yet.
		// Unpaced runs keep enough generations that nothing is removed.
		paced bool
	}{
		{name: "no rotation", opt: Options{}, before: 20, after: 2000, tail: -1},
		{name: "rotations, keep 3", opt: Options{MaxSize: 4096, MaxFiles: 3}, before: 100, after: 3000, tail: -1, paced: true},
		{name: "rotations, keep 1", opt: Options{MaxSize: 4096, MaxFiles: 1}, before: 10, after: 3000, tail: -1, paced: true},
		{name: "many rotations between polls", opt: Options{MaxSize: 2048, MaxFiles: 10000}, before: 100, after: 3000, tail: -1},
		{name: "tail then follow", opt: Options{MaxSize: 4096, MaxFiles: 3}, before: 300, after: 1000, tail: 5, paced: true},
		{name: "tail 0 then follow", opt: Options{MaxSize: 4096, MaxFiles: 3}, before: 300, after: 1000, tail: 0, paced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.before), uint64(tc.after)))
			dir := filepath.Join(t.TempDir(), "logs")
			w, err := OpenWriter(dir, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			writeAll(t, w, randomChunks(rng, 0, tc.before, 200))
			want := refTail(readAll(t, dir, ReadOptions{Tail: -1}), max(tc.tail, 0))
			if tc.tail < 0 {
				want = readAll(t, dir, ReadOptions{Tail: -1})
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done := make(chan struct{})
			f := follow(ctx, dir, ReadOptions{Tail: tc.tail, Done: done})

			var wantBytes int64
			for _, c := range want {
				wantBytes += int64(len(c.data))
			}
			if tc.tail >= 0 {
				// The tail is of the log as the follower finds it: let it find the log
				// before writing more. Having yielded the tail, it has; with nothing to
				// yield, give it time.
				for f.received.Load() < wantBytes {
					time.Sleep(time.Millisecond)
				}
				if wantBytes == 0 {
					time.Sleep(4 * pollInterval)
				}
			}
			after := randomChunks(rng, tc.before, tc.after, 200)
			for i, c := range after {
				if err := w.Write(c.s, []byte(c.data), time.Unix(0, c.t)); err != nil {
					t.Fatal(err)
				}
				wantBytes += int64(len(c.data))
				if i%97 == 0 {
					time.Sleep(time.Millisecond) // let the follower catch up now and then
				}
				if tc.paced && wantBytes-f.received.Load() > tc.opt.MaxSize/2 {
					deadline := time.Now().Add(10 * time.Second)
					for f.received.Load() != wantBytes {
						if time.Now().After(deadline) {
							t.Fatalf("follower has %d bytes of %d", f.received.Load(), wantBytes)
						}
						time.Sleep(time.Millisecond)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			close(done)
			if err := f.wait(t, 10*time.Second); err != nil {
				t.Fatalf("Read: %v", err)
			}
			want = append(want, after...)
			equalChunks(t, f.chunks(), want)
		})
	}
}

func TestFollowCancel(t *testing.T) {
	dir := writeLog(t, Options{}, chunks("o:1\n", "e:2\n"))
	ctx, cancel := context.WithCancel(context.Background())
	f := follow(ctx, dir, ReadOptions{Tail: -1})
	for f.received.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := f.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v, want context.Canceled", err)
	}
	equalChunks(t, f.chunks(), chunks("o:1\n", "e:2\n"))

	// Deadline while waiting for the first generation of an empty directory.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	f = follow(ctx, t.TempDir(), ReadOptions{Tail: -1})
	if err := f.wait(t, 5*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read = %v, want context.DeadlineExceeded", err)
	}
}

// TestFollowBeforeWriter: a follower started before the shim opened the log waits for
// it; one started after the container exited returns at once.
func TestFollowBeforeWriter(t *testing.T) {
	dir := t.TempDir()
	done := make(chan struct{})
	f := follow(context.Background(), dir, ReadOptions{Tail: -1, Done: done})
	time.Sleep(2 * pollInterval)
	cs := chunks("o:late\n", "e:start\n")
	w, err := OpenWriter(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, cs)
	w.Close()
	close(done)
	if err := f.wait(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	equalChunks(t, f.chunks(), cs)

	f = follow(context.Background(), t.TempDir(), ReadOptions{Tail: -1, Done: done})
	if err := f.wait(t, time.Second); err != nil || len(f.chunks()) != 0 {
		t.Errorf("Read = %v, %v; want nil, nothing", err, f.chunks())
	}
}

func TestFollowUntil(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Times near now, so that the clock is not past Until yet.
	now := time.Now()
	cs := chunks("o:0\n", "o:1\n", "o:2\n", "o:3\n")
	for i := range cs {
		cs[i].t = now.Add(time.Duration(i) * time.Millisecond).UnixNano()
	}
	writeAll(t, w, cs[:2])
	f := follow(context.Background(), dir, ReadOptions{Tail: -1, Until: time.Unix(0, cs[2].t)})
	time.Sleep(2 * pollInterval)
	select {
	case err := <-f.err:
		t.Fatalf("Read returned %v before the log passed Until", err)
	default:
	}
	writeAll(t, w, cs[2:])
	if err := f.wait(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	equalChunks(t, f.chunks(), cs[:3])

	// Until long past and nothing after it in the log: the follower does not wait for
	// ever.
	old := chunks("o:0\n", "e:1\n")
	f = follow(context.Background(), writeLog(t, Options{}, old), ReadOptions{Tail: -1, Until: at(10)})
	if err := f.wait(t, 5*time.Second); err != nil {
		t.Errorf("Read = %v", err)
	}
	equalChunks(t, f.chunks(), old)
}

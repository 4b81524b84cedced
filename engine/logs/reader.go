package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Entry is a piece of one stream's output.
type Entry struct {
	Stream Stream
	// Time is when the shim read the chunk the piece comes from.
	Time time.Time
	// Data is valid only during the callback; copy it to keep it.
	Data []byte
}

// ReadOptions select what Read yields.
type ReadOptions struct {
	// Streams to read; empty means both.
	Streams []Stream
	// Tail, if >= 0, yields only the last Tail lines of the selected streams (and
	// time bounds), a final line without "\n" counting as one; -1 yields everything.
	Tail int
	// Since, if not zero, skips entries whose Time is before it.
	Since time.Time
	// Until, if not zero, skips entries whose Time is after it. With Follow, Read
	// returns once it sees such an entry, or once the clock is a second past Until.
	Until time.Time
	// Follow makes Read wait for more output after the existing output, until ctx
	// ends or Done is closed.
	Follow bool
	// Done, with Follow, is closed when the container has exited and its shim has
	// written its last output; Read then yields what remains and returns nil.
	Done <-chan struct{}
}

// Tuning of the read path.
const (
	// indexBatch is how many index records one read fetches.
	indexBatch = 2730 // just under 64 KiB
	// dataWindow is the most output one read fetches: large enough that the syscall
	// cost vanishes, small enough to stay in cache while fn looks at it.
	dataWindow = 256 << 10
	// pollInterval is how often a follower looks for more output. Polling costs two
	// syscalls per interval and needs nothing from the Writer, which may be in another
	// process; 50 ms is below what a person watching notices.
	pollInterval = 50 * time.Millisecond
	// untilGrace is how long past Until a follower keeps waiting for chunks stamped
	// before Until that the shim has read but not yet written.
	untilGrace = time.Second
)

// Read calls fn with the output in dir that opt selects, in the order it was written,
// oldest retained generation first. Entries are chunks as written, or parts of them;
// they keep their stream and time, and no byte is yielded twice.
//
// With opt.Follow, Read then waits for more output, following the log across
// rotations, and returns ctx.Err() when ctx ends, or nil once opt.Done is closed and
// the rest is read. Without it, Read returns nil at the end of what there is.
//
// If fn returns an error, Read stops and returns it. A missing dir is an error
// wrapping fs.ErrNotExist; a dir without log files is an empty log.
func Read(ctx context.Context, dir string, opt ReadOptions, fn func(Entry) error) error {
	r, err := newReader(dir, opt, fn)
	if err != nil {
		return fmt.Errorf("read logs %s: %w", dir, err)
	}
	err = r.run(ctx)
	if r.ticker != nil {
		r.ticker.Stop()
	}
	if err == nil || r.fnErr || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("read logs %s: %w", dir, err)
}

// position is a place in the log: a byte offset in one generation's output. gen
// counts the generations Read has opened, oldest first, so later is larger.
type position struct {
	gen int
	off int64
}

func (p position) before(q position) bool {
	return p.gen < q.gen || (p.gen == q.gen && p.off < q.off)
}

// window is the part of a generation's output last read into reader.dbuf.
type window struct {
	gen *generation
	off int64
	n   int
}

type reader struct {
	dir        string
	opt        ReadOptions
	fn         func(Entry) error
	want       [numStreams]bool
	since      int64
	until      int64
	hasSince   bool
	hasUntil   bool
	hasCut     bool
	cut        [numStreams]position // with hasCut: bytes of a stream before its cut are skipped (set by tail)
	pastUntil  bool                 // a follower saw an entry after Until
	fnErr      bool                 // the error being returned came from fn
	ibuf, dbuf []byte
	win        window
	ticker     *time.Ticker
	gens       []*generation // opened so far, oldest first; closed ones are nil
	back       int           // how far dataBefore reads back next
}

func newReader(dir string, opt ReadOptions, fn func(Entry) error) (*reader, error) {
	r := &reader{
		dir:  dir,
		opt:  opt,
		fn:   fn,
		ibuf: make([]byte, indexBatch*recordSize),
		dbuf: make([]byte, dataWindow),
	}
	if len(opt.Streams) == 0 {
		r.want[Stdout], r.want[Stderr] = true, true
	}
	for _, s := range opt.Streams {
		if !s.valid() {
			return nil, fmt.Errorf("invalid stream %d", s)
		}
		r.want[s] = true
	}
	if !opt.Since.IsZero() {
		r.since, r.hasSince = opt.Since.UnixNano(), true
	}
	if !opt.Until.IsZero() {
		r.until, r.hasUntil = opt.Until.UnixNano(), true
	}
	return r, nil
}

func (r *reader) run(ctx context.Context) error {
	if _, err := os.Stat(r.dir); err != nil {
		return err
	}
	defer func() { closeAll(r.gens) }()
	if err := r.first(ctx); err != nil || len(r.gens) == 0 {
		return err
	}
	i, err := r.start(ctx)
	if err != nil {
		return err
	}
	for i < len(r.gens) {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := r.gens[i]
		if i < len(r.gens)-1 {
			// Not the newest: the Writer is done with it.
			if _, err := r.drain(ctx, i, g); err != nil || r.pastUntil {
				return err
			}
			g.close()
			r.gens[i] = nil
			i++
			continue
		}
		if !r.opt.Follow {
			_, err := r.drain(ctx, i, g)
			return err
		}
		// Look at Done and for a rotation before draining: whatever was written before
		// either happened is then in what the drain sees.
		done := r.done()
		rotated, err := r.rotated(g)
		if err != nil {
			return err
		}
		n, err := r.drain(ctx, i, g)
		if err != nil || r.pastUntil {
			return err
		}
		if rotated {
			newer, err := r.newer(ctx, g)
			if err != nil {
				return err
			}
			if len(newer) > 0 {
				r.gens = append(r.gens, newer...)
				continue
			}
			// Rotated, but its successor is not there yet: mid-rotation.
		}
		if done {
			return nil
		}
		if n == 0 {
			if r.hasUntil && time.Now().After(r.opt.Until.Add(untilGrace)) {
				return nil
			}
			if err := r.wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// first opens the generations there are. A follower waits for the first one, if the
// shim has not created it yet.
func (r *reader) first(ctx context.Context) error {
	for {
		done := r.done()
		gens, err := snapshot(ctx, r.dir)
		if err != nil {
			return err
		}
		if len(gens) > 0 || !r.opt.Follow || done {
			r.gens = gens
			return nil
		}
		if err := r.wait(ctx); err != nil {
			return err
		}
	}
}

// start returns the generation to read first, and sets its first record, as Tail says.
func (r *reader) start(ctx context.Context) (int, error) {
	if r.opt.Tail < 0 || len(r.gens) == 0 {
		return 0, nil
	}
	return r.tail(ctx, r.opt.Tail)
}

// done reports whether opt.Done is closed.
func (r *reader) done() bool {
	select {
	case <-r.opt.Done:
		return true
	default:
		return false
	}
}

// wait sleeps until the next poll, ctx ends or Done is closed.
func (r *reader) wait(ctx context.Context) error {
	if r.ticker == nil {
		r.ticker = time.NewTicker(pollInterval)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.opt.Done:
		return nil
	case <-r.ticker.C:
		return nil
	}
}

// rotated reports whether g is no longer the current generation.
func (r *reader) rotated(g *generation) (bool, error) {
	fi, err := os.Stat(genPath(r.dir, outputName, 0))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil // between the rename of output and the creation of the next
	}
	if err != nil {
		return false, err
	}
	return !os.SameFile(fi, g.id), nil
}

// newer opens the generations written after g. If g has been removed since, every
// generation there is is newer.
func (r *reader) newer(ctx context.Context, g *generation) ([]*generation, error) {
	gens, err := snapshot(ctx, r.dir)
	if err != nil {
		return nil, err
	}
	for j, h := range gens {
		if os.SameFile(h.id, g.id) {
			closeAll(gens[:j+1])
			return gens[j+1:], nil
		}
	}
	return gens, nil
}

// drain yields the records of g (the i-th generation) not read yet, and returns how
// many there were.
func (r *reader) drain(ctx context.Context, i int, g *generation) (int, error) {
	if g.index == nil {
		return 0, nil
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := g.index.ReadAt(r.ibuf, g.next)
		if err != nil && err != io.EOF {
			return total, err
		}
		batch := r.ibuf[:n-n%recordSize]
		if len(batch) == 0 {
			return total, nil
		}
		// Reads of output stop at the end of the batch's data: in the current
		// generation, bytes beyond may belong to a chunk whose record is not written yet.
		spanEnd := getRecord(batch[len(batch)-recordSize:]).end()
		for ; len(batch) > 0; batch = batch[recordSize:] {
			rec := getRecord(batch)
			g.next += recordSize
			total++
			if err := r.emit(i, g, rec, spanEnd); err != nil || r.pastUntil {
				return total, err
			}
		}
		if n < len(r.ibuf) {
			return total, nil
		}
	}
}

// selected reports whether rec is within opt's streams and time bounds.
func (r *reader) selected(rec record) bool {
	return int(rec.stream) < numStreams && r.want[rec.stream] &&
		!(r.hasSince && rec.time < r.since) && !(r.hasUntil && rec.time > r.until) &&
		rec.off >= 0 && rec.length > 0
}

// emit passes the part of rec that opt selects to fn.
func (r *reader) emit(i int, g *generation, rec record, spanEnd int64) error {
	if r.opt.Follow && r.hasUntil && rec.time > r.until {
		// Later entries are later still: the follower is done.
		r.pastUntil = true
		return nil
	}
	if !r.selected(rec) {
		return nil
	}
	a, b := rec.off, rec.end()
	if r.hasCut {
		c := r.cut[rec.stream]
		if !c.before(position{i, b}) {
			return nil
		}
		if c.gen == i && c.off > a {
			a = c.off
		}
	}
	t := time.Unix(0, rec.time)
	for a < b {
		d, err := r.dataAt(g, a, b, max(spanEnd, b))
		if err != nil {
			return err
		}
		if len(d) == 0 {
			return nil // the data is gone (damaged generation): skip the rest of the record
		}
		if err := r.fn(Entry{Stream: rec.stream, Time: t, Data: d}); err != nil {
			r.fnErr = true
			return err
		}
		a += int64(len(d))
	}
	return nil
}

// dataAt returns output bytes of g from a on, at most up to b, reading ahead up to
// limit.
func (r *reader) dataAt(g *generation, a, b, limit int64) ([]byte, error) {
	if r.win.gen != g || a < r.win.off || a >= r.win.off+int64(r.win.n) {
		n := min(limit-a, int64(len(r.dbuf)))
		m, err := g.output.ReadAt(r.dbuf[:n], a)
		if err != nil && err != io.EOF {
			return nil, err
		}
		r.win = window{gen: g, off: a, n: m}
		if m == 0 {
			return nil, nil
		}
	}
	lo := a - r.win.off
	hi := min(b-r.win.off, int64(r.win.n))
	return r.dbuf[lo:hi], nil
}

// dataBefore returns output bytes of g that end at b and start no earlier than a,
// reading back down to lo (and no further than the buffer allows). nil means the
// data is missing.
func (r *reader) dataBefore(g *generation, a, b, lo int64) ([]byte, error) {
	if r.win.gen != g || b-1 < r.win.off || b > r.win.off+int64(r.win.n) {
		// A short tail needs a few KiB; a long one gets the whole buffer after a few
		// reads.
		r.back = min(max(2*r.back, 16<<10), len(r.dbuf))
		start := max(min(lo, a), b-int64(r.back), 0)
		m, err := g.output.ReadAt(r.dbuf[:b-start], start)
		if err != nil && err != io.EOF {
			return nil, err
		}
		r.win = window{gen: g, off: start, n: m}
		if start+int64(m) < b {
			return nil, nil
		}
	}
	from := max(a, r.win.off)
	return r.dbuf[from-r.win.off : b-r.win.off], nil
}

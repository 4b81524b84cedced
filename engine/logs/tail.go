package logs

import (
	"bytes"
	"context"
	"io"
)

// Which lines are "the last n".
//
// Each stream is a sequence of lines of its own, and with both streams selected their
// lines interleave, a line of one possibly starting before and ending after lines of
// the other. A line happens when it ends (its "\n" arrives; a final line without one
// ends at its last byte), so the last n lines are the n that end last. Within one
// stream they are a suffix, so the result is one cut per stream: the start of its
// earliest selected line. Everything of that stream from the cut on is yielded, in
// output order, and new output after it too.
//
// tail finds the cuts by walking the log backwards from its end (the index in batches,
// the data through reader.dbuf): counting line ends until the n-th, at position p,
// then going on until it has seen, for every stream that wrote after p, the "\n" that
// ends its line before p. It reads no more of the log than that.

// tail sets r.cut for the last n lines of the selected output and returns the
// generation to read from, with its first record to read set.
func (r *reader) tail(ctx context.Context, n int) (int, error) {
	last := len(r.gens) - 1
	counts := make([]int64, len(r.gens))
	for i, g := range r.gens {
		if g.index == nil {
			continue
		}
		fi, err := g.index.Stat()
		if err != nil {
			return 0, err
		}
		counts[i] = fi.Size() / recordSize
	}
	// scanEnd is just after the newest record looked at: everything from it on is
	// newer than the tail, and yielded.
	scanEnd := position{gen: last}
	if c := counts[last]; c > 0 {
		var b [recordSize]byte
		if _, err := r.gens[last].index.ReadAt(b[:], (c-1)*recordSize); err != nil {
			return 0, err
		}
		scanEnd.off = getRecord(b[:]).end()
	}
	if n == 0 {
		r.gens[last].next = counts[last] * recordSize
		return r.skipTo(last), nil
	}

	t := tailScan{n: n}
	for i := last; i >= 0; i-- {
		g := r.gens[i]
		// Records of a damaged generation may point past its data; the reader yields
		// what there is of them, so the tail counts that.
		fi, err := g.output.Stat()
		if err != nil {
			return 0, err
		}
		size := fi.Size()
		for hi := counts[i]; hi > 0; {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			lo := max(0, hi-indexBatch)
			m, err := g.index.ReadAt(r.ibuf[:(hi-lo)*recordSize], lo*recordSize)
			if err != nil && err != io.EOF {
				return 0, err
			}
			batch := r.ibuf[:m-m%recordSize]
			if len(batch) == 0 {
				break
			}
			first := getRecord(batch).off
			for j := len(batch)/recordSize - 1; j >= 0; j-- {
				rec := getRecord(batch[j*recordSize:])
				if !r.selected(rec) {
					continue
				}
				for b := min(rec.end(), size); b > rec.off; {
					d, err := r.dataBefore(g, rec.off, b, first)
					if err != nil {
						return 0, err
					}
					if d == nil {
						break // data missing (damaged generation): as if the record were not there
					}
					b -= int64(len(d))
					if t.visit(position{i, b}, rec.stream, d, &r.cut) {
						r.setCuts(&t, scanEnd)
						g.next = (lo + int64(j)) * recordSize
						return r.skipTo(i), nil
					}
				}
			}
			hi = lo
		}
	}
	// Reached the beginning: fewer than n lines, or the earliest of them started there.
	if t.phase2 {
		for s := range t.pending {
			if t.pending[s] {
				r.cut[s] = position{}
			}
		}
		r.setCuts(&t, scanEnd)
	}
	return 0, nil
}

// setCuts completes r.cut once the scan is over: a stream that wrote nothing after the
// n-th line end from the end has no line in the tail, so only its newer output is
// yielded.
func (r *reader) setCuts(t *tailScan, scanEnd position) {
	r.hasCut = true
	for s := range t.seen {
		if !t.seen[s] {
			r.cut[s] = scanEnd
		}
	}
}

// skipTo closes the generations before i, which the tail leaves out, and returns i.
func (r *reader) skipTo(i int) int {
	closeAll(r.gens[:i])
	clear(r.gens[:i])
	return i
}

// tailScan is the state of the backward walk.
type tailScan struct {
	n     int
	count int // line ends seen
	// seen: streams met while counting (they wrote after the n-th line end).
	seen [numStreams]bool
	// phase2: the n-th line end is found; pending: streams whose cut is still unknown.
	phase2   bool
	pending  [numStreams]bool
	npending int
}

// visit looks at d, bytes of stream s starting at pos, the next piece going backwards.
// It reports whether every cut is known; it sets them in cut.
func (t *tailScan) visit(pos position, s Stream, d []byte, cut *[numStreams]position) bool {
	if len(d) == 0 {
		return false
	}
	j := len(d) // d[:j] is what is still to look at
	if !t.phase2 {
		if !t.seen[s] {
			t.seen[s] = true
			if d[len(d)-1] != '\n' {
				t.lineEnd() // the stream's last line, unterminated
			}
		}
		for !t.phase2 {
			k := bytes.LastIndexByte(d[:j], '\n')
			if k < 0 {
				return false
			}
			j = k
			t.lineEnd()
		}
	}
	if t.pending[s] {
		if k := bytes.LastIndexByte(d[:j], '\n'); k >= 0 {
			cut[s] = position{pos.gen, pos.off + int64(k) + 1}
			t.pending[s] = false
			t.npending--
		}
	}
	return t.npending == 0
}

func (t *tailScan) lineEnd() {
	t.count++
	if t.count < t.n {
		return
	}
	t.phase2 = true
	t.pending = t.seen
	for _, p := range t.pending {
		if p {
			t.npending++
		}
	}
}

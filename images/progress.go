package images

import (
	"sync"
	"sync/atomic"
	"time"
)

// Layer statuses reported while pulling.
const (
	LayerWaiting     = "waiting"     // queued behind other downloads
	LayerDownloading = "downloading" // downloading, and unpacking as it arrives
	LayerUnpacking   = "unpacking"   // unpacking a blob already in the store
	LayerRetrying    = "retrying"    // a download failed; trying again after a pause
	LayerExists      = "exists"      // already in the store: nothing to do
	LayerDone        = "done"        // downloaded, verified and unpacked
	LayerFailed      = "failed"
)

// Pull statuses.
const (
	PullResolving = "resolving" // asking the registry for the manifest
	PullPulling   = "pulling"
	PullDone      = "done"
	PullFailed    = "failed"
)

// Progress is the state of one pull (or load), for progress bars and the tree's
// images/pull file.
type Progress struct {
	Ref    string          `json:"ref"`
	Status string          `json:"status"`
	Digest string          `json:"digest,omitempty"` // manifest digest, once known
	Error  string          `json:"error,omitempty"`
	Layers []LayerProgress `json:"layers"`
}

// LayerProgress is the state of one layer of a pull. Current counts compressed bytes
// received (or read from the store when unpacking a stored blob).
type LayerProgress struct {
	Digest  string `json:"digest"`
	Status  string `json:"status"`
	Current int64  `json:"current"`
	Size    int64  `json:"size"`
	Error   string `json:"error,omitempty"`
}

// pullState is the live progress of one pull, updated by its workers.
type pullState struct {
	mu     sync.Mutex
	p      Progress
	bytes  []atomic.Int64
	change atomic.Int64
}

func newPullState(ref string) *pullState {
	return &pullState{p: Progress{Ref: ref, Status: PullResolving}}
}

func (st *pullState) setLayers(ls []LayerProgress) {
	st.mu.Lock()
	st.p.Status = PullPulling
	st.p.Layers = ls
	st.bytes = make([]atomic.Int64, len(ls))
	st.mu.Unlock()
	st.change.Add(1)
}

func (st *pullState) set(fn func(p *Progress)) {
	st.mu.Lock()
	fn(&st.p)
	st.mu.Unlock()
	st.change.Add(1)
}

func (st *pullState) layer(i int, status string) {
	st.set(func(p *Progress) { p.Layers[i].Status = status })
}

func (st *pullState) layerBytes(i int, n int64) {
	st.bytes[i].Store(n)
	st.change.Add(1)
}

// snapshot returns a copy safe to hand to other goroutines.
func (st *pullState) snapshot() Progress {
	st.mu.Lock()
	defer st.mu.Unlock()
	p := st.p
	p.Layers = append([]LayerProgress(nil), st.p.Layers...)
	for i := range p.Layers {
		p.Layers[i].Current = st.bytes[i].Load()
	}
	return p
}

// report calls fn with the progress whenever it changed, at most every interval, until
// the returned function is called; that call reports once more if anything changed.
func (st *pullState) report(fn func(Progress), interval time.Duration) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		seen := int64(-1)
		emit := func() {
			if c := st.change.Load(); c != seen {
				seen = c
				fn(st.snapshot())
			}
		}
		for {
			select {
			case <-t.C:
				emit()
			case <-done:
				emit()
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// countingReader counts bytes read into a pull's progress.
type countingReader struct {
	r  interface{ Read([]byte) (int, error) }
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// Pulls returns the progress of the pulls and loads under way.
func (s *Store) Pulls() []Progress {
	s.mu.Lock()
	states := make([]*pullState, 0, len(s.pulls))
	for st := range s.pulls {
		states = append(states, st)
	}
	s.mu.Unlock()
	out := make([]Progress, len(states))
	for i, st := range states {
		out[i] = st.snapshot()
	}
	return out
}

func (s *Store) startPull(st *pullState) func() {
	s.mu.Lock()
	s.pulls[st] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.pulls, st)
		s.mu.Unlock()
	}
}

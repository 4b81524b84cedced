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
	mu    sync.Mutex
	p     Progress
	bytes []atomic.Int64
	// sent is the byte count last reported, per layer.
	sent []int64

	emitMu sync.Mutex
	fn     func(Progress)
}

func newPullState(ref string) *pullState {
	return &pullState{p: Progress{Ref: ref, Status: PullResolving}}
}

func (st *pullState) setLayers(ls []LayerProgress) {
	st.emitMu.Lock()
	st.mu.Lock()
	st.p.Status = PullPulling
	st.p.Layers = ls
	st.bytes = make([]atomic.Int64, len(ls))
	st.sent = make([]int64, len(ls))
	st.mu.Unlock()
	st.emitMu.Unlock()
	st.emit()
}

// set changes the state and reports it at once: every change of status is seen.
func (st *pullState) set(fn func(p *Progress)) {
	st.mu.Lock()
	fn(&st.p)
	st.mu.Unlock()
	st.emit()
}

func (st *pullState) layer(i int, status string) {
	st.set(func(p *Progress) { p.Layers[i].Status = status })
}

// layerBytes records bytes received; they are reported at the next tick.
func (st *pullState) layerBytes(i int, n int64) {
	st.bytes[i].Store(n)
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

// emit reports the current state, one report at a time.
func (st *pullState) emit() {
	st.emitMu.Lock()
	defer st.emitMu.Unlock()
	if st.fn == nil {
		return
	}
	p := st.snapshot()
	for i := range p.Layers {
		st.sent[i] = p.Layers[i].Current
	}
	st.fn(p)
}

// moved tells whether bytes arrived since the last report.
func (st *pullState) moved() bool {
	st.emitMu.Lock()
	defer st.emitMu.Unlock()
	for i := range st.bytes {
		if st.bytes[i].Load() != st.sent[i] {
			return true
		}
	}
	return false
}

// report has fn called with the progress on every change of status, and every interval
// while bytes arrive, until the returned function is called.
func (st *pullState) report(fn func(Progress), interval time.Duration) (stop func()) {
	if fn == nil {
		return func() {}
	}
	st.emitMu.Lock()
	st.fn = fn
	st.emitMu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if st.moved() {
					st.emit()
				}
			case <-done:
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		st.emitMu.Lock()
		st.fn = nil
		st.emitMu.Unlock()
	}
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

package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// pullDisplay shows a pull's progress: a bar per layer on a terminal, a line per change
// of a layer's status otherwise.
type pullDisplay struct {
	mu       sync.Mutex
	w        io.Writer
	bars     *mpb.Progress
	layers   map[string]*layerBar
	status   map[string]string
	quiet    bool
	terminal bool
}

type layerBar struct {
	bar    *mpb.Bar
	status atomic.Value // string; read by the bar's own goroutine
}

func newPullDisplay(w io.Writer, terminal, quiet bool) *pullDisplay {
	d := &pullDisplay{w: w, terminal: terminal && !quiet, quiet: quiet, layers: map[string]*layerBar{}, status: map[string]string{}}
	if d.terminal {
		d.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))
	}
	return d
}

func (d *pullDisplay) update(p api.Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.quiet {
		return
	}
	for _, l := range p.Layers {
		id := shortID(l.Digest)
		if !d.terminal {
			if d.status[id] != l.Status {
				d.status[id] = l.Status
				fmt.Fprintf(d.w, "%s: %s\n", id, l.Status)
			}
			continue
		}
		lb := d.layers[id]
		if lb == nil {
			lb = &layerBar{}
			lb.status.Store(l.Status)
			st := lb
			// Created with no total, so that reaching the size does not complete the
			// bar before its status says done.
			lb.bar = d.bars.AddBar(0,
				mpb.PrependDecorators(decor.Name(id, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
					decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%-11s", st.status.Load()) })),
				mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
			)
			lb.bar.SetTotal(max(l.Size, 1), false)
			d.layers[id] = lb
		}
		lb.status.Store(l.Status)
		switch l.Status {
		case images.LayerDone, images.LayerExists:
			lb.bar.SetTotal(max(l.Size, 1), true)
		case images.LayerFailed:
			lb.bar.Abort(false)
		default:
			lb.bar.SetCurrent(l.Current)
		}
	}
}

// finish stops the bars (all of them, whatever their state).
func (d *pullDisplay) finish() {
	if d.bars == nil {
		return
	}
	d.mu.Lock()
	for _, lb := range d.layers {
		if !lb.bar.Completed() {
			lb.bar.Abort(false)
		}
	}
	d.mu.Unlock()
	d.bars.Wait()
}

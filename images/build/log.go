package build

import (
	"context"
	"io"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
)

// PlainLog writes a build's progress to w as BuildKit's plain display does (the lines
// `docker build --progress plain` prints). It returns the function to hand Build, and
// one that waits until everything has been written.
func PlainLog(w io.Writer) (progress func(*Status), wait func()) {
	display, err := progressui.NewDisplay(w, progressui.PlainMode)
	if err != nil {
		// The plain display needs no terminal: this does not happen.
		return nil, func() {}
	}
	ch := make(chan *client.SolveStatus, 16)
	done := make(chan struct{})
	go func() {
		display.UpdateFrom(context.Background(), ch)
		close(done)
	}()
	closed := false
	return func(st *Status) { ch <- st }, func() {
		if !closed {
			closed = true
			close(ch)
		}
		<-done
	}
}

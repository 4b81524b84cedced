package vm

import (
	"strings"
	"sync"
)

// tail keeps the end of what is written to it (a process's stderr, a guest's console),
// to quote when the process fails.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lines are the last n lines written, trimmed, without empty ones: a first line cut
// by the bound is dropped unless it is all there is.
func (t *tail) lines(n int) []string {
	t.mu.Lock()
	s := string(t.buf)
	cut := len(t.buf) == t.max
	t.mu.Unlock()
	var out []string
	all := strings.Split(s, "\n")
	for i, l := range all {
		if i == 0 && cut && len(all) > 1 {
			continue
		}
		// A serial console ends its lines with CRLF.
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

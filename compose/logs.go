package compose

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/logs"
)

// projectLog is a project's output as one growing file: every container's lines,
// prefixed as docker compose logs prints them ("web-1  | "), in the order they arrive,
// so that tail -f follows the project. It is made afresh when first asked for after
// the daemon starts, from each container's output so far, then followed.
type projectLog struct {
	path   string
	cancel context.CancelFunc
	// ready is closed once the output so far is in the file.
	ready chan struct{}
	mu    sync.Mutex // serialises writes of whole lines
	f     *os.File
}

// LogFile is the path of project name's growing output file, which a follower keeps
// current from now until the project is taken down or the daemon stops.
func (m *Manager) LogFile(name string) (string, error) {
	m.mu.Lock()
	l, err := m.logFileLocked(name)
	m.mu.Unlock()
	if err != nil || l == nil {
		return filepath.Join(m.e.DataRoot(), "compose-logs", name+".log"), err
	}
	<-l.ready
	return l.path, nil
}

func (m *Manager) logFileLocked(name string) (*projectLog, error) {
	if m.closed {
		return nil, fmt.Errorf("the daemon is stopping")
	}
	if l, ok := m.logs[name]; ok {
		return l, nil
	}
	dir := filepath.Join(m.e.DataRoot(), "compose-logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, up := m.projects[name]; !up {
		// A project that is down has no output to follow: an empty file.
		f.Close()
		return nil, nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	l := &projectLog{path: path, cancel: cancel, f: f, ready: make(chan struct{})}
	m.logs[name] = l
	m.wg.Go(func() { m.followProject(ctx, name, l) })
	return l, nil
}

// stopLogLocked ends the follower of project name's output and removes its file. The
// caller holds mu.
func (m *Manager) stopLogLocked(name string) {
	if l, ok := m.logs[name]; ok {
		l.cancel()
		delete(m.logs, name)
	}
}

// followProject keeps l current: it follows the output of every container of project
// name, those made later included (a recreated service), each from where it was left.
func (m *Manager) followProject(ctx context.Context, name string, l *projectLog) {
	defer func() {
		l.f.Close()
		os.Remove(l.path)
	}()
	// A container is followed while it runs, and again at each new run (started), even
	// one that began and ended between two looks (a one-shot job restarted).
	type followed struct {
		running, visited bool
		started, last    time.Time
	}
	var mu sync.Mutex
	seen := map[string]*followed{}
	var wg sync.WaitGroup
	defer wg.Wait()
	// The output so far, container after container, before the file is handed out.
	first := projectContainers(m.e, name)
	prefix := prefixes(name, first)
	for _, c := range first {
		s := &followed{visited: true, started: c.StartedAt}
		seen[c.ID] = s
		l.copy(ctx, m.e, c.ID, prefix(c), logs.ReadOptions{Tail: -1}, func(t time.Time) { s.last = t })
	}
	close(l.ready)
	for {
		cs := projectContainers(m.e, name)
		prefix := prefixes(name, cs)
		for _, c := range cs {
			mu.Lock()
			s := seen[c.ID]
			if s == nil {
				s = &followed{}
				seen[c.ID] = s
			}
			start := !s.running && (c.State.Live() || !s.visited || c.StartedAt.After(s.started))
			if start {
				s.running, s.visited, s.started = true, true, c.StartedAt
			}
			since := s.last
			mu.Unlock()
			if !start {
				continue
			}
			id, p := c.ID, prefix(c)
			wg.Go(func() {
				opts := logs.ReadOptions{Follow: true, Tail: -1}
				if !since.IsZero() {
					opts.Since = since.Add(time.Nanosecond)
				}
				l.copy(ctx, m.e, id, p, opts, func(t time.Time) {
					mu.Lock()
					s.last = t
					mu.Unlock()
				})
				mu.Lock()
				s.running = false
				mu.Unlock()
			})
		}
		// New containers (a service recreated, a replica added) and restarts are
		// picked up at the next look.
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// prefixes gives each of project name's containers cs its prefix, as docker compose
// logs prints it: the name without the project's, padded to the longest ("web-1  | ").
func prefixes(name string, cs []*engine.Container) func(*engine.Container) string {
	width := 0
	for _, c := range cs {
		width = max(width, len(strings.TrimPrefix(c.Name, name+"-")))
	}
	return func(c *engine.Container) string {
		return fmt.Sprintf("%-*s | ", width, strings.TrimPrefix(c.Name, name+"-"))
	}
}

// copy appends container id's output (as opts selects) to l, whole lines each with
// prefix, and tells at of each entry's time.
func (l *projectLog) copy(ctx context.Context, e *engine.Engine, id, prefix string, opts logs.ReadOptions, at func(time.Time)) {
	var partial []byte
	e.Logs(ctx, id, opts, func(en logs.Entry) error {
		partial = append(partial, en.Data...)
		if i := bytes.LastIndexByte(partial, '\n'); i >= 0 {
			l.write(prefix, partial[:i+1])
			partial = append(partial[:0], partial[i+1:]...)
		}
		at(en.Time)
		return nil
	})
	if len(partial) > 0 {
		l.write(prefix, append(partial, '\n'))
	}
}

// write appends lines (whole ones), each with prefix.
func (l *projectLog) write(prefix string, lines []byte) {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(lines, []byte{'\n'}) {
		if len(line) > 0 {
			b.WriteString(prefix)
			b.Write(line)
		}
	}
	l.mu.Lock()
	l.f.Write(b.Bytes())
	l.mu.Unlock()
}

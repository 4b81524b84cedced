package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Event is one thing that happened in the engine, as `dutchman events`, the API's event
// stream and the tree's events file show it.
type Event struct {
	// Seq orders events; it grows by one with each event, across daemon restarts.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Type is what the event is about: "container", "image", "volume", "network" or
	// "project" (a compose project: apply, error, down).
	Type string `json:"type"`
	// Action is what happened: create, start, die, stop, kill, pause, unpause, restart,
	// rename, destroy, oom, warning (the runtime's word on a run: a VM under TCG) for
	// containers; pull, push, tag, untag, delete, load for images.
	Action string `json:"action"`
	// ID and Name identify the object: a container's ID and name, an image's ID and name.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Attributes say more: exitCode, signal, error, image...
	Attributes map[string]string `json:"attributes,omitempty"`
}

// EventFilter selects events. Empty fields select everything.
type EventFilter struct {
	Type      string
	Container string // ID or name
	Since     time.Time
	// After selects events with a sequence number above it (to resume a stream).
	After uint64
}

func (f EventFilter) match(e *Event) bool {
	if f.Type != "" && e.Type != f.Type {
		return false
	}
	if f.Container != "" && (e.Type != "container" || (e.ID != f.Container && e.Name != f.Container)) {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	return e.Seq > f.After
}

// maxEvents is how many events the history keeps.
const maxEvents = 10000

var bucketEvents = []byte("events")

// events is the bus: it numbers events, keeps the last maxEvents in the database, and
// hands them to subscribers.
type events struct {
	db   *bolt.DB
	mu   sync.Mutex
	seq  uint64
	subs map[*subscription]struct{}
	// file is events as JSON lines, appended to as they happen: what the tree's events
	// file shows (a plain growing file for tail -f).
	file     *os.File
	fileSize int64
	path     string
}

// maxEventsFile is how large the events file grows before it is rotated (to .1).
const maxEventsFile = 16 << 20

type subscription struct {
	filter EventFilter
	ch     chan Event
}

func newEvents(db *bolt.DB, path string) (*events, error) {
	ev := &events{db: db, subs: map[*subscription]struct{}{}, path: path}
	if err := ev.openFile(); err != nil {
		return nil, err
	}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		if k, _ := b.Cursor().Last(); k != nil {
			ev.seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return ev, err
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// publish records an event and hands it to the subscribers it matches. A subscriber too
// slow to keep up loses its subscription (its channel is closed) rather than slow the
// engine down.
func (ev *events) publish(e Event) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.seq++
	e.Seq = ev.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	data, _ := json.Marshal(e)
	ev.appendFile(data)
	ev.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if err := b.Put(seqKey(e.Seq), data); err != nil {
			return err
		}
		if e.Seq > maxEvents {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= e.Seq-maxEvents; k, _ = c.Next() {
				c.Delete()
			}
		}
		return nil
	})
	for s := range ev.subs {
		if !s.filter.match(&e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			close(s.ch)
			delete(ev.subs, s)
		}
	}
}

func (ev *events) openFile() error {
	f, err := os.OpenFile(ev.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	ev.file, ev.fileSize = f, info.Size()
	return nil
}

// appendFile adds an event to the events file, rotating it when it is full. The caller
// holds ev.mu. A failure to write it loses no event: the database has it.
func (ev *events) appendFile(data []byte) {
	if ev.fileSize+int64(len(data))+1 > maxEventsFile {
		ev.file.Close()
		os.Rename(ev.path, ev.path+".1")
		if err := ev.openFile(); err != nil {
			return
		}
	}
	n, _ := ev.file.Write(append(data, '\n'))
	ev.fileSize += int64(n)
}

func (ev *events) close() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.file != nil {
		ev.file.Close()
	}
}

// EventsFile is the file events are appended to as JSON lines.
func (e *Engine) EventsFile() string { return e.events.path }

// Events returns the recorded events f selects and, if follow, a channel of those to
// come (closed when cancel is called or the subscriber falls too far behind). Events
// recorded and events to come neither overlap nor leave a gap.
func (e *Engine) Events(f EventFilter, follow bool) (past []Event, next <-chan Event, cancel func()) {
	ev := e.events
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(seqKey(f.After + 1)); k != nil; k, v = c.Next() {
			var evt Event
			if json.Unmarshal(v, &evt) == nil && f.match(&evt) {
				past = append(past, evt)
			}
		}
		return nil
	})
	if !follow {
		return past, nil, func() {}
	}
	s := &subscription{filter: f, ch: make(chan Event, 1024)}
	ev.subs[s] = struct{}{}
	var once sync.Once
	return past, s.ch, func() {
		once.Do(func() {
			ev.mu.Lock()
			if _, ok := ev.subs[s]; ok {
				delete(ev.subs, s)
				close(s.ch)
			}
			ev.mu.Unlock()
		})
	}
}

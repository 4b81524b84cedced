package engine

import (
	"encoding/binary"
	"encoding/json"
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
	// Type is what the event is about: "container" or "image".
	Type string `json:"type"`
	// Action is what happened: create, start, die, stop, kill, pause, unpause, restart,
	// rename, destroy, oom for containers; pull, push, tag, untag, delete, load for images.
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
}

type subscription struct {
	filter EventFilter
	ch     chan Event
}

func newEvents(db *bolt.DB) (*events, error) {
	ev := &events{db: db, subs: map[*subscription]struct{}{}}
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

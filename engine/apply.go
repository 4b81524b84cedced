package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Apply makes the container called name run spec, as saving its spec file asks. With no
// such container it creates one (state created); one whose spec is spec already is left
// alone; any other is recreated with spec, keeping its run state: a running container
// comes back running. A missing image is pulled (or built, by a spec's build:) first. Everything that can be checked is
// checked before the old container goes, so that a bad spec never costs a working one.
// changed tells whether a container was made.
func (e *Engine) Apply(ctx context.Context, name string, spec Spec) (c *Container, changed bool, err error) {
	if err := ValidName(name); err != nil {
		return nil, false, err
	}
	if err := spec.validate(); err != nil {
		return nil, false, err
	}
	if _, err := e.chooseRuntime(ctx, spec.Runtime); err != nil {
		return nil, false, err
	}
	unlock := e.applying.lock(name)
	defer unlock()

	old, err := e.Get(name)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, err
	}
	if old != nil && old.Name != name {
		old = nil // an ID prefix, not the name
	}
	if old != nil && sameSpec(old.Spec, spec) {
		return old, false, nil
	}
	if _, err := e.images.Get(ctx, spec.Image); errors.Is(err, errdefs.ErrNotFound) && spec.Build != nil {
		b := *spec.Build
		b.Tags = append([]string{spec.Image}, b.Tags...)
		b.Unprivileged = spec.Unprivileged
		if _, err := e.Build(ctx, b, nil); err != nil {
			return nil, false, err
		}
	} else if errors.Is(err, errdefs.ErrNotFound) {
		if _, err := e.PullImage(ctx, spec.Image); err != nil {
			return nil, false, err
		}
	} else if err != nil {
		return nil, false, err
	}
	running := false
	var inherit map[string]string
	if old != nil {
		// The new container takes over the old one's anonymous volumes (an image's
		// VOLUME paths: a database's data), as Compose does.
		inherit = e.anonymousVolumes(old)
		switch old.State {
		case Running, Paused, Starting, Restarting:
			running = true
		}
		if err := e.Stop(ctx, old.ID, nil); err != nil {
			return nil, false, fmt.Errorf("recreate %s: %w", name, err)
		}
		if err := e.Remove(ctx, old.ID, RemoveOptions{Force: true}); err != nil {
			return nil, false, fmt.Errorf("recreate %s: %w", name, err)
		}
	}
	c, err = e.create(ctx, name, spec, inherit)
	if err != nil {
		return nil, false, err
	}
	if running {
		if err := e.Start(ctx, c.ID, StartOptions{}); err != nil {
			return nil, true, err
		}
		c, _ = e.Get(c.ID)
	}
	return c, true, nil
}

// sameSpec tells whether two specs ask for the same container.
func sameSpec(a, b Spec) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// keyedMutex is a mutex per key.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

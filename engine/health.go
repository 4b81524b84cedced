package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Healthcheck is how a container's health is tested: compose's healthcheck: and the
// image's HEALTHCHECK, with Docker's meaning and defaults.
type Healthcheck struct {
	// Test is ["CMD", arg...] (run as is), ["CMD-SHELL", command] (run by /bin/sh -c),
	// or ["NONE"] (no check, not even the image's).
	Test []string `json:"test,omitempty"`
	// Interval between probes once the start period is over (default 30s).
	Interval *Duration `json:"interval,omitempty"`
	// Timeout of a probe, which then counts as failed (default 30s).
	Timeout *Duration `json:"timeout,omitempty"`
	// StartPeriod is the time the process has to start: failures in it do not count,
	// and a success ends it (default 0).
	StartPeriod *Duration `json:"start_period,omitempty"`
	// StartInterval is the interval between probes in the start period (default 5s).
	StartInterval *Duration `json:"start_interval,omitempty"`
	// Retries is how many failures in a row make the container unhealthy (default 3).
	Retries int `json:"retries,omitempty"`
	// Disable turns off the check, the image's too.
	Disable bool `json:"disable,omitempty"`
}

// Health states.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Health is a running container's health, as its last probes found it.
type Health struct {
	Status        string        `json:"status"`
	FailingStreak int           `json:"failingStreak"`
	Log           []HealthProbe `json:"log,omitempty"` // the last five probes
}

// HealthProbe is one probe's result.
type HealthProbe struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

const (
	defaultHealthInterval      = 30 * time.Second
	defaultHealthTimeout       = 30 * time.Second
	defaultHealthStartInterval = 5 * time.Second
	defaultHealthRetries       = 3
	// healthLogSize and healthOutputMax bound what a container's record keeps of its
	// probes, as Docker's do.
	healthLogSize   = 5
	healthOutputMax = 4096
)

func (h *Healthcheck) validate() error {
	if h == nil {
		return nil
	}
	if len(h.Test) > 0 {
		switch h.Test[0] {
		case "NONE":
		case "CMD", "CMD-SHELL":
			if len(h.Test) < 2 {
				return errdefs.Invalid(fmt.Errorf("invalid healthcheck test %q: %s needs a command", h.Test, h.Test[0]))
			}
			if h.Test[0] == "CMD-SHELL" && len(h.Test) != 2 {
				return errdefs.Invalid(fmt.Errorf("invalid healthcheck test %q: CMD-SHELL takes one command line", h.Test))
			}
		default:
			return errdefs.Invalid(fmt.Errorf("invalid healthcheck test %q: it starts with CMD, CMD-SHELL or NONE", h.Test))
		}
	}
	for name, d := range map[string]*Duration{"interval": h.Interval, "timeout": h.Timeout, "start_period": h.StartPeriod, "start_interval": h.StartInterval} {
		if d == nil {
			continue
		}
		if *d < 0 || (name != "start_period" && *d < Duration(time.Millisecond)) {
			return errdefs.Invalid(fmt.Errorf("invalid healthcheck %s %s: at least 1ms", name, time.Duration(*d)))
		}
	}
	if h.Retries < 0 {
		return errdefs.Invalid(fmt.Errorf("invalid healthcheck retries %d", h.Retries))
	}
	return nil
}

// resolveHealthcheck merges the spec's healthcheck with the image's, as Docker does:
// the spec's settings override the image's one by one. nil: no check.
func resolveHealthcheck(spec *Healthcheck, img *v1.HealthConfig) *Healthcheck {
	var h Healthcheck
	if img != nil {
		h.Test = img.Test
		dur := func(d time.Duration) *Duration {
			if d == 0 {
				return nil
			}
			v := Duration(d)
			return &v
		}
		h.Interval, h.Timeout, h.StartPeriod, h.Retries = dur(img.Interval), dur(img.Timeout), dur(img.StartPeriod), img.Retries
	}
	if spec != nil {
		if spec.Disable {
			return nil
		}
		if len(spec.Test) > 0 {
			h.Test = spec.Test
		}
		if spec.Interval != nil {
			h.Interval = spec.Interval
		}
		if spec.Timeout != nil {
			h.Timeout = spec.Timeout
		}
		if spec.StartPeriod != nil {
			h.StartPeriod = spec.StartPeriod
		}
		if spec.StartInterval != nil {
			h.StartInterval = spec.StartInterval
		}
		if spec.Retries != 0 {
			h.Retries = spec.Retries
		}
	}
	if len(h.Test) < 2 || h.Test[0] == "NONE" {
		return nil
	}
	return &h
}

func orDefault(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// checkHealth probes the container that run of ct is (started at c.StartedAt) as its
// healthcheck says, until ctx ends with the run.
func (e *Engine) checkHealth(ctx context.Context, ct *container, c *Container) {
	h := c.Healthcheck
	interval, timeout := orDefault(h.Interval, defaultHealthInterval), orDefault(h.Timeout, defaultHealthTimeout)
	startPeriod, startInterval := orDefault(h.StartPeriod, 0), orDefault(h.StartInterval, defaultHealthStartInterval)
	retries := h.Retries
	if retries == 0 {
		retries = defaultHealthRetries
	}
	args := h.Test[1:]
	if h.Test[0] == "CMD-SHELL" {
		args = []string{"/bin/sh", "-c", h.Test[1]}
	}
	run := c.StartedAt
	for {
		wait := interval
		inStart := time.Since(run) < startPeriod
		if cur := ct.snapshot(); inStart && cur.Health != nil && cur.Health.Status == HealthStarting {
			wait = startInterval
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		if ct.snapshot().State != Running {
			continue // paused: no probe, as Docker
		}
		probe := e.probe(ctx, c, args, timeout)
		if ctx.Err() != nil {
			return
		}
		inStart = probe.Start.Sub(run) < startPeriod
		e.recordProbe(ct, run, probe, inStart, retries)
	}
}

// probe runs the health test once.
func (e *Engine) probe(ctx context.Context, c *Container, args []string, timeout time.Duration) HealthProbe {
	p := HealthProbe{Start: time.Now().UTC()}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitedBuffer{max: healthOutputMax}
	code, err := e.Exec(pctx, c.ID, &rt.ExecConfig{Args: args}, rt.Streams{Stdout: out, Stderr: out}, nil)
	p.End, p.ExitCode, p.Output = time.Now().UTC(), code, string(out.b)
	switch {
	case errors.Is(pctx.Err(), context.DeadlineExceeded):
		p.ExitCode, p.Output = -1, fmt.Sprintf("Health check exceeded timeout (%s)", timeout)
	case err != nil:
		p.ExitCode, p.Output = -1, err.Error()
	}
	return p
}

// recordProbe adds a probe's result to the health of ct's run started at run, and
// announces a change of status (health_status: healthy) as Docker does.
func (e *Engine) recordProbe(ct *container, run time.Time, p HealthProbe, inStart bool, retries int) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	cur := ct.rec.Load()
	if (cur.State != Running && cur.State != Paused) || !cur.StartedAt.Equal(run) || cur.Health == nil {
		return // the run ended meanwhile
	}
	h := *cur.Health
	h.Log = append(slices.Clone(h.Log), p)
	if len(h.Log) > healthLogSize {
		h.Log = h.Log[len(h.Log)-healthLogSize:]
	}
	switch {
	case p.ExitCode == 0:
		h.Status, h.FailingStreak = HealthHealthy, 0
	case inStart && h.Status == HealthStarting:
		// Failures in the start period do not count.
	default:
		h.FailingStreak++
		if h.FailingStreak >= retries {
			h.Status = HealthUnhealthy
		}
	}
	next := *cur
	next.Health = &h
	// Written to the database when the status or the streak changes, not at every
	// probe: the probes' log is kept in memory in between.
	if h.Status != cur.Health.Status || h.FailingStreak != cur.Health.FailingStreak {
		if err := e.persist(&next); err != nil {
			e.log.Warn("record health", "container", cur.Name, "err", err)
			return
		}
	}
	ct.rec.Store(&next)
	close(ct.changed)
	ct.changed = make(chan struct{})
	if h.Status != cur.Health.Status {
		e.publishContainer(&next, "health_status: "+h.Status, nil)
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

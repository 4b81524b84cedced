package engine

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine/network"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
)

// restore loads the containers an earlier run recorded and brings each to where it
// belongs: running ones are reattached to (their shims kept them running, and kept their
// output, while no daemon ran), those that exited meanwhile get their real exit status
// and their restart policy, and half-done removals are finished.
func (e *Engine) restore(ctx context.Context) error {
	recs, err := e.loadRecords()
	if err != nil {
		return err
	}
	var cts []*container
	for _, c := range recs {
		ct := newContainer(c)
		e.containers[c.ID] = ct
		e.names[c.Name] = c.ID
		cts = append(cts, ct)
	}
	var toStart []*container
	for _, ct := range cts {
		c := ct.snapshot()
		if c.NetNS != "" {
			switch c.State {
			case Stopped, Created, Restarting, Removing:
				// Its run ended while the daemon was away: its network goes.
				e.dropNetwork(ct)
			}
		}
		switch c.State {
		case Removing:
			go e.finishRemoval(ct)
		case Running, Paused, Starting, Stopping:
			e.reattach(ctx, ct)
		case Restarting:
			ct.mu.Lock()
			ct.restartTimer = time.AfterFunc(restartBackoffMin, func() { e.restartAfterExit(ct) })
			ct.mu.Unlock()
		case Stopped, Created:
			if c.Spec.AutoRemove && c.State == Stopped {
				go e.finishRemoval(ct)
				continue
			}
			if p, _ := ParseRestartPolicy(c.Spec.Restart); p.Name == "always" || (p.Name == "unless-stopped" && !c.ManuallyStopped) {
				// As Docker: such containers start with the daemon (unless-stopped ones
				// only if nobody stopped them).
				if c.State == Stopped {
					toStart = append(toStart, ct)
				}
			}
		}
	}
	// What CNI still holds for containers whose runs are over (the daemon crashed before
	// it took their networks down, or they went meanwhile) is released, and so are
	// their network namespaces.
	running := map[string]bool{}
	for _, ct := range cts {
		if c := ct.snapshot(); c.NetNS != "" {
			running[c.ID] = true
			e.reservePublished(c)
		}
	}
	if err := e.networks.ReleaseStale(ctx, func(id string) bool { return running[id] }); err != nil {
		e.log.Warn("release the networks of containers no longer running", "err", err)
	}
	if ents, err := os.ReadDir(filepath.Join(e.cfg.DataRoot, "netns")); err == nil {
		for _, ent := range ents {
			if !running[ent.Name()] {
				network.RemoveNS(filepath.Join(e.cfg.DataRoot, "netns", ent.Name()))
			}
		}
	}
	for _, ct := range toStart {
		go func() {
			ct.op.Lock()
			defer ct.op.Unlock()
			if ct.snapshot().State != Stopped || e.ctx.Err() != nil {
				return
			}
			if err := e.start(e.ctx, ct, StartOptions{}, "start"); err != nil {
				e.log.Warn("start by restart policy at daemon start", "container", ct.snapshot().Name, "err", err)
			}
		}()
	}
	return nil
}

// reattach finds the task of a container recorded as running.
func (e *Engine) reattach(ctx context.Context, ct *container) {
	c := ct.snapshot()
	runtime := e.runtimes[c.Runtime]
	var task rt.Task
	var err error
	if runtime != nil {
		task, err = runtime.Load(ctx, c.ID, e.logDir(c.ID))
	}
	if runtime == nil || err != nil {
		e.log.Warn("container's task is gone", "container", c.Name, "err", err)
		// Its monitor and process are gone: record it as exited, as a machine restart
		// leaves it.
		ct.mu.Lock()
		terr := e.transitionLocked(ct, Stopped, "die", map[string]string{"exitCode": "255"}, func(c *Container) {
			c.ExitCode, c.Pid, c.FinishedAt = 255, 0, time.Now().UTC()
			if err != nil {
				c.Error = err.Error()
			}
		})
		ct.mu.Unlock()
		if terr != nil {
			e.log.Error("record lost container", "container", c.Name, "err", terr)
		}
		e.dropNetwork(ct)
		return
	}
	exited := make(chan struct{})
	ct.mu.Lock()
	ct.task, ct.exited = task, exited
	if c.State == Starting && task.Pid() > 0 {
		// The daemon died between starting the process and recording it.
		e.transitionLocked(ct, Running, "", nil, func(c *Container) { c.Pid, c.StartedAt = task.Pid(), time.Now().UTC() })
	}
	ct.mu.Unlock()
	if task.Pid() > 0 {
		e.log.Info("reattached to container", "container", c.Name, "pid", task.Pid())
	}
	e.monitor(ct, task, exited)
	if c.State == Stopping {
		// The stop was cut short with the daemon: finish it.
		go func() {
			if err := e.Stop(e.ctx, c.ID, nil); err != nil {
				e.log.Warn("finish interrupted stop", "container", c.Name, "err", err)
			}
		}()
	}
}

// finishRemoval completes a removal an earlier run began.
func (e *Engine) finishRemoval(ct *container) {
	c := ct.snapshot()
	if c.State == Removing {
		// Let Remove run again from a state it accepts.
		e.transition(ct, Stopped, "", nil, nil)
	}
	if err := e.Remove(e.ctx, c.ID, RemoveOptions{Force: true}); err != nil {
		e.log.Warn("finish removal", "container", c.Name, "err", err)
	}
}

// dropNetwork takes down the network of a container whose run is over, and forgets it.
func (e *Engine) dropNetwork(ct *container) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	c := ct.rec.Load()
	e.disconnect(e.ctx, c.ID, c.NetNS, c.Endpoints)
	next := *c
	next.NetNS, next.Endpoints = "", nil
	if err := e.persist(&next); err == nil {
		ct.rec.Store(&next)
	}
}

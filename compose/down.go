package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// DownOptions say what Down removes besides the containers and networks.
type DownOptions struct {
	// Volumes removes the project's named volumes too (docker compose down -v).
	Volumes bool
	// Progress, if set, hears of each step.
	Progress func(Progress)
}

// Down takes project name down as docker compose down does: its containers stopped
// (those that depend on others first) and removed, then its networks; its volumes
// stay unless asked.
func Down(ctx context.Context, e *engine.Engine, name string, o DownOptions) error {
	report := o.Progress
	if report == nil {
		report = func(Progress) {}
	}
	cs := projectContainers(e, name)
	if err := stopInOrder(ctx, e, cs, report); err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if err := removeContainer(ctx, e, c, report); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	nets, err := e.NetworkList()
	if err != nil {
		return err
	}
	for _, n := range nets {
		if n.Labels[LabelProject] != name {
			continue
		}
		report(Progress{Kind: "Network", Name: n.Name, Status: "Removing"})
		if err := e.RemoveNetwork(n.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, err))
			continue
		}
		report(Progress{Kind: "Network", Name: n.Name, Status: "Removed"})
	}
	if o.Volumes {
		vols, err := e.Volumes()
		if err != nil {
			return err
		}
		for _, v := range vols {
			if v.Labels[LabelProject] != name {
				continue
			}
			report(Progress{Kind: "Volume", Name: v.Name, Status: "Removing"})
			if err := e.RemoveVolume(ctx, v.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
				continue
			}
			report(Progress{Kind: "Volume", Name: v.Name, Status: "Removed"})
		}
	}
	return errors.Join(errs...)
}

// stopInOrder stops containers cs of one project, a service's only once the services
// that depend on it are stopped (as their depends_on labels say), in parallel
// otherwise.
func stopInOrder(ctx context.Context, e *engine.Engine, cs []*engine.Container, report func(Progress)) error {
	byService := map[string][]*engine.Container{}
	dependents := map[string][]string{}
	for _, c := range cs {
		svc := c.Spec.Labels[LabelService]
		byService[svc] = append(byService[svc], c)
	}
	for svc, list := range byService {
		for _, dep := range strings.Split(list[0].Spec.Labels[LabelDependsOn], ",") {
			if name, _, _ := strings.Cut(dep, ":"); name != "" {
				dependents[name] = append(dependents[name], svc)
			}
		}
	}
	if cyclic(dependents) {
		dependents = nil // labels of another version of the project: order is moot
	}
	stopped := map[string]chan struct{}{}
	for svc := range byService {
		stopped[svc] = make(chan struct{})
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for svc, list := range byService {
		wg.Go(func() {
			defer close(stopped[svc])
			for _, d := range dependents[svc] {
				if ch, ok := stopped[d]; ok && d != svc {
					<-ch
				}
			}
			for _, c := range list {
				if !c.State.Live() {
					continue
				}
				report(Progress{Kind: "Container", Name: c.Name, Status: "Stopping"})
				if err := e.Stop(ctx, c.ID, nil); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop %s: %w", c.Name, err))
					mu.Unlock()
					continue
				}
				report(Progress{Kind: "Container", Name: c.Name, Status: "Stopped"})
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cyclic tells whether graph (a node's successors) has a cycle.
func cyclic(graph map[string][]string) bool {
	const (
		visiting = 1
		visited  = 2
	)
	mark := map[string]int{}
	var visit func(n string) bool
	visit = func(n string) bool {
		switch mark[n] {
		case visiting:
			return true
		case visited:
			return false
		}
		mark[n] = visiting
		for _, m := range graph[n] {
			if m != n && visit(m) {
				return true
			}
		}
		mark[n] = visited
		return false
	}
	for n := range graph {
		if visit(n) {
			return true
		}
	}
	return false
}

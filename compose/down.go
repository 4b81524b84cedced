package compose

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// Stop stops the containers of project name (of services, if any are named), those
// that depend on others first.
func Stop(ctx context.Context, e *engine.Engine, name string, services []string) error {
	return stopInOrder(ctx, e, serviceContainers(e, name, services), func(Progress) {})
}

// Start starts the stopped containers of project name (of services, if any are named),
// each after the services it depends on.
func Start(ctx context.Context, e *engine.Engine, name string, services []string) error {
	cs := serviceContainers(e, name, services)
	if len(cs) == 0 {
		return errdefs.NotFound(fmt.Errorf("project %s has no containers (up makes them)", name))
	}
	var errs []error
	for _, c := range dependencyOrder(cs) {
		if c.State.Live() {
			continue
		}
		if err := e.Start(ctx, c.ID, engine.StartOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("start %s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// serviceContainers are the containers of project name's services (all if none named).
func serviceContainers(e *engine.Engine, name string, services []string) []*engine.Container {
	cs := projectContainers(e, name)
	if len(services) > 0 {
		cs = slices.DeleteFunc(cs, func(c *engine.Container) bool { return !slices.Contains(services, c.Spec.Labels[LabelService]) })
	}
	return cs
}

// dependencyOrder orders a project's containers so that each comes after the services
// its depends_on label names (a cycle leaves the rest in name order).
func dependencyOrder(cs []*engine.Container) []*engine.Container {
	deps := map[string][]string{}
	has := map[string]bool{}
	for _, c := range cs {
		svc := c.Spec.Labels[LabelService]
		has[svc] = true
		for _, d := range strings.Split(c.Spec.Labels[LabelDependsOn], ",") {
			if n, _, _ := strings.Cut(d, ":"); n != "" && n != svc {
				deps[svc] = append(deps[svc], n)
			}
		}
	}
	placed := map[string]bool{}
	var out []*engine.Container
	done := map[*engine.Container]bool{}
	for len(out) < len(cs) {
		var ready []*engine.Container
		for _, c := range cs {
			if done[c] {
				continue
			}
			ok := true
			for _, d := range deps[c.Spec.Labels[LabelService]] {
				if has[d] && !placed[d] {
					ok = false
				}
			}
			if ok {
				ready = append(ready, c)
			}
		}
		if len(ready) == 0 {
			for _, c := range cs {
				if !done[c] {
					ready = append(ready, c)
				}
			}
		}
		for _, c := range ready {
			done[c] = true
			out = append(out, c)
		}
		for _, c := range ready {
			placed[c.Spec.Labels[LabelService]] = true
		}
	}
	return out
}

// ServiceState is how a project's service is doing: its containers running of those it
// has, and their health.
type ServiceState struct {
	Service string
	Running int
	Total   int
	// Health is healthy, unhealthy or starting (the worst of its containers'), or ""
	// without a healthcheck.
	Health string
}

// States are the states of project name's services, by name.
func States(e *engine.Engine, name string) []ServiceState {
	byService := map[string]*ServiceState{}
	var names []string
	rank := map[string]int{"": 0, engine.HealthHealthy: 1, engine.HealthStarting: 2, engine.HealthUnhealthy: 3}
	for _, c := range projectContainers(e, name) {
		svc := c.Spec.Labels[LabelService]
		s := byService[svc]
		if s == nil {
			s = &ServiceState{Service: svc}
			byService[svc] = s
			names = append(names, svc)
		}
		s.Total++
		if c.State.Live() {
			s.Running++
			if c.Health != nil && rank[c.Health.Status] > rank[s.Health] {
				s.Health = c.Health.Status
			}
		}
	}
	slices.Sort(names)
	out := make([]ServiceState, 0, len(names))
	for _, n := range names {
		out = append(out, *byService[n])
	}
	return out
}

// Containers are the containers of project name, by name.
func Containers(e *engine.Engine, name string) []*engine.Container { return projectContainers(e, name) }

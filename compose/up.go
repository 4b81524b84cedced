package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// Progress is a step of up or down, as docker compose prints them ("Container
// web-1  Started").
type Progress struct {
	Kind   string `json:"kind"` // Network, Volume, Image, Container
	Name   string `json:"name"`
	Status string `json:"status"` // Creating, Created, Recreated, Started, Running, Pulling, ...
	Detail string `json:"detail,omitempty"`
}

// UpOptions say what Up brings up.
type UpOptions struct {
	// Services are the services to bring up, with what they depend on; none: all.
	Services []string
	// Progress, if set, hears of each step.
	Progress func(Progress)
	// Load says where the project's files are (the tree) and what they may ask.
	Load LoadOptions
	// NoStart makes and remakes containers without starting those that do not run (a
	// stopped project's re-apply).
	NoStart bool
	// Build builds the images of services with a build: section even if they are here
	// (up --build); NoBuild builds none (up --no-build). Otherwise those missing are
	// built, and those of pull_policy: build.
	Build, NoBuild bool
}

// Up brings project p up as docker compose up -d does: its networks and volumes made,
// missing images pulled, every service's containers made (or remade where their
// configuration changed) and running, in dependency order, and containers of services
// that are gone removed. Services whose configuration did not change keep running.
func Up(ctx context.Context, e *engine.Engine, p *types.Project, o UpOptions) error {
	report := o.Progress
	if report == nil {
		report = func(Progress) {}
	}
	if len(o.Services) > 0 {
		var err error
		if p, err = p.WithSelectedServices(o.Services, types.IncludeDependencies); err != nil {
			return errdefs.Invalid(err)
		}
	}
	// Everything is planned, and so checked, before anything changes.
	if err := checkProject(p, o.Load); err != nil {
		return err
	}
	plan := map[string][]planned{}
	for _, s := range p.Services {
		n := replicas(s)
		if n > 1 && s.ContainerName != "" {
			return errdefs.Invalid(fmt.Errorf("service %s: container_name %s names one container, and %d replicas are asked for", s.Name, s.ContainerName, n))
		}
		for i := 1; i <= n; i++ {
			spec, err := serviceSpec(p, s, i, o.Load)
			if err != nil {
				return err
			}
			plan[s.Name] = append(plan[s.Name], planned{name: containerName(p, s, i), service: s.Name, number: i, spec: spec})
		}
	}
	if err := ensureNetworks(e, p, report); err != nil {
		return err
	}
	if err := ensureVolumes(ctx, e, p, report); err != nil {
		return err
	}
	if err := pullMissing(ctx, e, p, report); err != nil {
		return err
	}
	if !o.NoBuild {
		if err := Build(ctx, e, p, BuildOptions{Missing: !o.Build, Load: o.Load}, report); err != nil {
			return err
		}
	}
	// Each container records its image's ID: one whose image was built or pulled anew
	// is remade.
	ids := map[string]string{}
	for _, cs := range plan {
		for i := range cs {
			img := cs[i].spec.Image
			if _, ok := ids[img]; !ok {
				if im, err := e.Images().Get(ctx, img); err == nil {
					ids[img] = im.ID
				} else {
					ids[img] = ""
				}
			}
			if ids[img] != "" {
				cs[i].spec.Labels[LabelImage] = ids[img]
			}
		}
	}
	if len(o.Services) == 0 {
		if err := removeOrphans(ctx, e, p, report); err != nil {
			return err
		}
	}

	// Each service starts once those it depends on are as its depends_on asks.
	done := map[string]chan struct{}{}
	errs := map[string]error{}
	// made tells which services had containers made or remade.
	made := map[string]bool{}
	var mu sync.Mutex
	for name := range p.Services {
		done[name] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for name, s := range p.Services {
		wg.Go(func() {
			defer close(done[name])
			err := func() error {
				for dep, d := range s.DependsOn {
					ch, ok := done[dep]
					if !ok {
						if d.Required {
							return fmt.Errorf("service %s depends on %s, which is not in the project", name, dep)
						}
						continue
					}
					select {
					case <-ch:
					case <-ctx.Done():
						return ctx.Err()
					}
					mu.Lock()
					derr := errs[dep]
					mu.Unlock()
					if derr != nil {
						if !d.Required {
							continue
						}
						return dependencyFailure{fmt.Errorf("service %s: dependency %s failed", name, dep)}
					}
					if o.NoStart {
						continue // a stopped project's services are made, not started: nothing to wait for
					}
					if err := waitDependency(ctx, e, plan[dep], dep, d, report); err != nil {
						if !d.Required {
							continue
						}
						return err
					}
				}
				changed, err := upService(ctx, e, p.Name, name, plan[name], o.NoStart, report)
				mu.Lock()
				made[name] = changed
				restart := false
				for dep, d := range s.DependsOn {
					restart = restart || (d.Restart && made[dep])
				}
				mu.Unlock()
				if err != nil || changed || !restart || o.NoStart {
					return err
				}
				// depends_on restart: true: a dependency remade restarts the service.
				for _, c := range plan[name] {
					if ct, err := e.Get(c.name); err == nil && ct.State.Live() {
						report(Progress{Kind: "Container", Name: c.name, Status: "Restarting"})
						if err := e.Restart(ctx, ct.ID, nil); err != nil {
							return fmt.Errorf("restart %s: %w", c.name, err)
						}
						report(Progress{Kind: "Container", Name: c.name, Status: "Restarted"})
					}
				}
				return nil
			}()
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	var all []error
	for _, name := range sortedKeys(errs) {
		if err := errs[name]; err != nil && !isDependencyFailure(err) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// dependencyFailure marks an error that only repeats another service's.
type dependencyFailure struct{ error }

func isDependencyFailure(err error) bool {
	var d dependencyFailure
	return errors.As(err, &d)
}

// upService makes a service's containers run its planned specs, and removes replicas
// beyond the planned number.
func upService(ctx context.Context, e *engine.Engine, project, service string, cs []planned, noStart bool, report func(Progress)) (made bool, err error) {
	for _, c := range cs {
		old, _ := e.Get(c.name)
		if old != nil && old.Name != c.name {
			old = nil
		}
		if old != nil && (old.Spec.Labels[LabelProject] != project || old.Spec.Labels[LabelService] != service) {
			// As Compose: a name in use by another container is not taken from it.
			return made, errdefs.Conflict(fmt.Errorf("container name %s is already in use by a container that is not service %s of project %s", c.name, service, project))
		}
		ct, changed, err := e.Apply(ctx, c.name, c.spec)
		made = made || changed
		if err != nil {
			return made, fmt.Errorf("container %s: %w", c.name, err)
		}
		switch {
		case changed && old != nil:
			report(Progress{Kind: "Container", Name: c.name, Status: "Recreated"})
		case changed:
			report(Progress{Kind: "Container", Name: c.name, Status: "Created"})
		}
		switch ct.State {
		case engine.Running, engine.Starting, engine.Restarting:
			if !changed {
				report(Progress{Kind: "Container", Name: c.name, Status: "Running"})
			}
			continue
		case engine.Paused:
			report(Progress{Kind: "Container", Name: c.name, Status: "Paused"})
			continue
		}
		if noStart {
			continue
		}
		report(Progress{Kind: "Container", Name: c.name, Status: "Starting"})
		if err := e.Start(ctx, ct.ID, engine.StartOptions{}); err != nil {
			return made, fmt.Errorf("start %s: %w", c.name, err)
		}
		report(Progress{Kind: "Container", Name: c.name, Status: "Started"})
	}
	// The service's other containers go: replicas beyond the number asked for (all of
	// them at scale 0), the highest numbers first, and any under a name it no longer has
	// (container_name changed).
	var extra []*engine.Container
	for _, c := range projectContainers(e, project) {
		if c.Spec.Labels[LabelService] == service && !slices.ContainsFunc(cs, func(p planned) bool { return p.name == c.Name }) {
			extra = append(extra, c)
		}
	}
	sort.Slice(extra, func(i, j int) bool {
		return atoi(extra[i].Spec.Labels[LabelNumber]) > atoi(extra[j].Spec.Labels[LabelNumber])
	})
	for _, c := range extra {
		if err := removeContainer(ctx, e, c, report); err != nil {
			return made, err
		}
	}
	return made, nil
}

// waitDependency waits until the containers of service dep are as d's condition asks:
// started (they are, once dep is up), healthy, or exited with status 0.
func waitDependency(ctx context.Context, e *engine.Engine, cs []planned, dep string, d types.ServiceDependency, report func(Progress)) error {
	switch d.Condition {
	case "", types.ServiceConditionStarted:
		return nil
	case types.ServiceConditionCompletedSuccessfully:
		for _, c := range cs {
			report(Progress{Kind: "Container", Name: c.name, Status: "Waiting"})
			code, err := e.Wait(ctx, c.name, engine.WaitNotRunning)
			if err != nil {
				return fmt.Errorf("wait for %s: %w", c.name, err)
			}
			if code != 0 {
				return fmt.Errorf("service %s did not complete successfully: container %s exited with %d", dep, c.name, code)
			}
			report(Progress{Kind: "Container", Name: c.name, Status: "Exited"})
		}
		return nil
	case types.ServiceConditionHealthy:
		for _, c := range cs {
			report(Progress{Kind: "Container", Name: c.name, Status: "Waiting"})
			if err := waitHealthy(ctx, e, c.name); err != nil {
				return fmt.Errorf("service %s: %w", dep, err)
			}
			report(Progress{Kind: "Container", Name: c.name, Status: "Healthy"})
		}
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("depends_on %s: unknown condition %q", dep, d.Condition))
}

// ensureNetworks makes the project's networks that are missing; external ones must be
// there.
func ensureNetworks(e *engine.Engine, p *types.Project, report func(Progress)) error {
	used := map[string]bool{}
	for _, s := range p.Services {
		for name := range s.Networks {
			used[name] = true
		}
	}
	for _, key := range sortedKeys(p.Networks) {
		n := p.Networks[key]
		if !used[key] {
			continue
		}
		if _, err := e.Network(n.Name); err == nil {
			continue
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if bool(n.External) {
			return errdefs.NotFound(fmt.Errorf("network %s declared as external, but could not be found", n.Name))
		}
		if n.Driver != "" && n.Driver != "bridge" {
			return errdefs.Invalid(fmt.Errorf("network %s: driver %s is not supported (bridge)", key, n.Driver))
		}
		opts := network.CreateOptions{Labels: map[string]string{}}
		for k, v := range n.Labels {
			opts.Labels[k] = v
		}
		// Compose's labels last: down finds the project's networks by them.
		opts.Labels[LabelProject], opts.Labels[LabelNetwork] = p.Name, key
		if n.Ipam.Config != nil {
			for _, c := range n.Ipam.Config {
				if c != nil && c.Subnet != "" {
					opts.Subnet, opts.Gateway = c.Subnet, c.Gateway
					break
				}
			}
		}
		report(Progress{Kind: "Network", Name: n.Name, Status: "Creating"})
		if _, err := e.CreateNetwork(n.Name, opts); err != nil {
			// Made meanwhile by another up is as good; any other conflict (a subnet
			// taken) is an error.
			if _, gerr := e.Network(n.Name); !errors.Is(err, errdefs.ErrConflict) || gerr != nil {
				return fmt.Errorf("network %s: %w", n.Name, err)
			}
		}
		report(Progress{Kind: "Network", Name: n.Name, Status: "Created"})
	}
	return nil
}

// ensureVolumes makes the project's volumes that are missing; external ones must be
// there.
func ensureVolumes(ctx context.Context, e *engine.Engine, p *types.Project, report func(Progress)) error {
	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		if _, err := e.Volume(v.Name); err == nil {
			continue
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if bool(v.External) {
			return errdefs.NotFound(fmt.Errorf("volume %s declared as external, but could not be found", v.Name))
		}
		opts := volumes.CreateOptions{Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: map[string]string{}}
		for k, val := range v.Labels {
			opts.Labels[k] = val
		}
		opts.Labels[LabelProject], opts.Labels[LabelVolume] = p.Name, key
		report(Progress{Kind: "Volume", Name: v.Name, Status: "Creating"})
		if _, err := e.CreateVolume(ctx, v.Name, opts); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		report(Progress{Kind: "Volume", Name: v.Name, Status: "Created"})
	}
	return nil
}

// pullMissing pulls the images that the project's services name and the store lacks
// (or that pull_policy: always names), each once.
func pullMissing(ctx context.Context, e *engine.Engine, p *types.Project, report func(Progress)) error {
	return pullImages(ctx, e, p, false, report)
}

// Pull pulls the images of project p's services, each once, whether or not they are
// here (docker compose pull).
func Pull(ctx context.Context, e *engine.Engine, p *types.Project, report func(Progress)) error {
	if report == nil {
		report = func(Progress) {}
	}
	return pullImages(ctx, e, p, true, report)
}

// pullImages pulls the images of p's services, each once: all of them, or those missing
// (and those of pull_policy: always).
func pullImages(ctx context.Context, e *engine.Engine, p *types.Project, all bool, report func(Progress)) error {
	// Images a service builds are built, not pulled (docker compose pull
	// --ignore-buildable), for the other services that name them too.
	seen := map[string]bool{}
	for _, s := range p.Services {
		if s.Build != nil {
			seen[ImageOf(p, s)] = true
		}
	}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Image == "" || seen[s.Image] {
			continue
		}
		seen[s.Image] = true
		if !all {
			if _, err := e.Images().Get(ctx, s.Image); err == nil && s.PullPolicy != types.PullPolicyAlways {
				continue
			} else if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				return err
			}
			if s.PullPolicy == types.PullPolicyNever {
				return errdefs.NotFound(fmt.Errorf("service %s: image %s is not here, and pull_policy is never", name, s.Image))
			}
		}
		report(Progress{Kind: "Image", Name: s.Image, Status: "Pulling"})
		if _, err := e.PullImage(ctx, s.Image); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		report(Progress{Kind: "Image", Name: s.Image, Status: "Pulled"})
	}
	return nil
}

// removeOrphans removes the project's containers whose service is gone.
func removeOrphans(ctx context.Context, e *engine.Engine, p *types.Project, report func(Progress)) error {
	for _, c := range projectContainers(e, p.Name) {
		svc := c.Spec.Labels[LabelService]
		_, ok := p.Services[svc]
		if _, disabled := p.DisabledServices[svc]; !ok && !disabled {
			if err := removeContainer(ctx, e, c, report); err != nil {
				return err
			}
		}
	}
	return nil
}

func removeContainer(ctx context.Context, e *engine.Engine, c *engine.Container, report func(Progress)) error {
	if now, err := e.Get(c.ID); err == nil {
		c = now
	}
	if c.State.Live() {
		report(Progress{Kind: "Container", Name: c.Name, Status: "Stopping"})
		if err := e.Stop(ctx, c.ID, nil); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("stop %s: %w", c.Name, err)
		}
		report(Progress{Kind: "Container", Name: c.Name, Status: "Stopped"})
	}
	report(Progress{Kind: "Container", Name: c.Name, Status: "Removing"})
	if err := e.Remove(ctx, c.ID, engine.RemoveOptions{Force: true}); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("remove %s: %w", c.Name, err)
	}
	report(Progress{Kind: "Container", Name: c.Name, Status: "Removed"})
	return nil
}

// projectContainers are the containers of project name, by name.
func projectContainers(e *engine.Engine, name string) []*engine.Container {
	var out []*engine.Container
	for _, c := range e.List() {
		if c.Spec.Labels[LabelProject] == name {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *engine.Container) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// waitHealthy waits until container name is healthy. It fails if it has no
// healthcheck, turns unhealthy, or stops, as docker compose does.
func waitHealthy(ctx context.Context, e *engine.Engine, name string) error {
	for {
		c, changed, err := e.Watch(name)
		if err != nil {
			return err
		}
		switch {
		case c.Healthcheck == nil:
			return fmt.Errorf("container %s has no healthcheck configured", name)
		case c.Health != nil && c.Health.Status == engine.HealthHealthy:
			return nil
		case c.Health != nil && c.Health.Status == engine.HealthUnhealthy:
			return fmt.Errorf("container %s is unhealthy", name)
		case !c.State.Live():
			return fmt.Errorf("container %s exited (%d) before it was healthy", name, c.ExitCode)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// projectServiceKeys are the keys a project's service takes: those of a container's spec
// file, and those only a project has.
var projectServiceKeys = append(slices.Clone(ServiceKeys),
	"depends_on", "deploy", "scale", "container_name", "profiles", "pull_policy", "env_file", "extends", "expose", "attach")

// checkProject refuses what FlyingDutchman does not do yet, rather than ignore it (a
// service asking read_only or cap_drop would run looser than it asked), and what lo does
// not allow: ipam and driver options (a subnet over the host's routes, a mount of a host
// device) are root's.
func checkProject(p *types.Project, lo LoadOptions) error {
	bad := func(format string, args ...any) error { return errdefs.Invalid(fmt.Errorf(format, args...)) }
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		keys, err := setKeys(s)
		if err != nil {
			return err
		}
		for _, k := range keys {
			switch {
			case k == "build":
				if err := checkBuild(name, s.Build); err != nil {
					return err
				}
			case k == "develop":
				// develop is for watch, which this is not
			case !slices.Contains(projectServiceKeys, k):
				return bad("service %s: %s: not supported by FlyingDutchman yet", name, k)
			}
		}
		if s.Deploy != nil {
			keys, err := setKeys(s.Deploy)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if k != "replicas" {
					return bad("service %s: deploy.%s: not supported by FlyingDutchman yet (deploy.replicas is)", name, k)
				}
			}
		}
		switch s.PullPolicy {
		case "", types.PullPolicyMissing, types.PullPolicyIfNotPresent, types.PullPolicyNever, types.PullPolicyAlways:
		case types.PullPolicyBuild:
			if s.Build == nil {
				return bad("service %s: pull_policy build: the service has no build: section", name)
			}
		default:
			return bad("service %s: pull_policy %s: not supported (missing, never, always, build)", name, s.PullPolicy)
		}
	}
	for _, key := range sortedKeys(p.Networks) {
		n := p.Networks[key]
		switch {
		case bool(n.External):
		case n.Driver != "" && n.Driver != "bridge":
			return bad("network %s: driver %s is not supported (bridge)", key, n.Driver)
		case n.Internal:
			return bad("network %s: internal networks are not supported yet", key)
		case n.EnableIPv6 != nil && *n.EnableIPv6:
			return bad("network %s: IPv6 is not supported yet", key)
		case len(n.DriverOpts) > 0:
			return bad("network %s: driver_opts are not supported", key)
		case !lo.Privileged && len(n.Ipam.Config) > 0:
			return bad("network %s: ipam: a project in the tree of a user other than root takes its subnets from the engine's pool", key)
		}
	}
	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		switch {
		case bool(v.External):
		case v.Driver != "" && v.Driver != "local":
			return bad("volume %s: driver %s is not supported (local)", key, v.Driver)
		case !lo.Privileged && len(v.DriverOpts) > 0:
			return bad("volume %s: driver_opts: a project in the tree of a user other than root may not mount what root chose (a host directory, a disk)", key)
		}
	}
	return nil
}

// setKeys are the keys v (a compose-go type) has set, as its JSON shows them.
func setKeys(v any) ([]string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range sortedKeys(m) {
		switch x := m[k].(type) {
		case nil:
		case map[string]any:
			if len(x) > 0 {
				keys = append(keys, k)
			}
		case []any:
			if len(x) > 0 {
				keys = append(keys, k)
			}
		default:
			keys = append(keys, k)
		}
	}
	return keys, nil
}

package compose

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// LabelImage is the ID of the image a project's container was made from: a service
// whose image was built or pulled anew is recreated, as Compose does.
const LabelImage = "com.docker.compose.image"

// buildKeys are the keys of a service's build: section that FlyingDutchman builds with;
// the others are refused rather than ignored.
var buildKeys = []string{"context", "dockerfile", "dockerfile_inline", "args", "labels", "target", "platforms", "no_cache", "pull", "tags"}

// ImageOf is the image service s runs: its image:, or for a service that is only built,
// PROJECT-SERVICE as Compose names it.
func ImageOf(p *types.Project, s types.ServiceConfig) string {
	if s.Image != "" {
		return s.Image
	}
	return strings.ToLower(p.Name + "-" + s.Name)
}

// checkBuild refuses the build: keys FlyingDutchman does not build with.
func checkBuild(name string, b *types.BuildConfig) error {
	keys, err := setKeys(b)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !slices.Contains(buildKeys, k) {
			return errdefs.Invalid(fmt.Errorf("service %s: build.%s: not supported by FlyingDutchman yet (%s are)", name, k, strings.Join(buildKeys, ", ")))
		}
	}
	if strings.Contains(b.Context, "://") || strings.HasPrefix(b.Context, "git@") {
		return errdefs.Invalid(fmt.Errorf("service %s: build.context %s: only directories are built from, not URLs", name, b.Context))
	}
	return nil
}

// BuildOptionsOf are the options of service s's build. A project of the tree builds
// from a directory of the tree, resolved inside it.
func BuildOptionsOf(p *types.Project, s types.ServiceConfig, lo LoadOptions) build.Options {
	b := s.Build
	ctx := b.Context
	if ctx == "" {
		ctx = "."
	}
	o := build.Options{
		Dockerfile: b.Dockerfile, DockerfileInline: b.DockerfileInline, Target: b.Target,
		Platforms: b.Platforms, NoCache: b.NoCache, Pull: b.Pull, Labels: b.Labels,
		Tags: append([]string{ImageOf(p, s)}, b.Tags...),
	}
	// The loader makes the context absolute: for a project of the tree, a path of the
	// tree (its working directory is).
	switch {
	case lo.InTree:
		o.InTree, o.Unprivileged = true, !lo.Privileged
		if o.Context = ctx; !path.IsAbs(ctx) {
			o.Context = path.Join(p.WorkingDir, ctx)
		}
	case filepath.IsAbs(ctx):
		o.Context = ctx
	default:
		o.Context = filepath.Join(p.WorkingDir, ctx)
	}
	for k, v := range b.Args {
		if v != nil {
			if o.Args == nil {
				o.Args = map[string]string{}
			}
			o.Args[k] = *v
		}
	}
	return o
}

// BuildOptions choose what Build and Up build.
type BuildOptions struct {
	// Missing builds only the images the store lacks (and those of pull_policy: build),
	// as up does; otherwise every one is built.
	Missing bool
	// NoCache builds every step again.
	NoCache bool
	// Load says where the project's files are.
	Load LoadOptions
}

// ServiceBuild is one image a project builds: the first service (by name) that builds
// it, and its build.
type ServiceBuild struct {
	Service string
	Image   string
	// Always is pull_policy: build: the image is built even if it is here.
	Always  bool
	Options build.Options
}

// Builds are the images the services with a build: section build, each once, in the
// order of the services' names; what is not built with is refused.
func Builds(p *types.Project, lo LoadOptions) ([]ServiceBuild, error) {
	var out []ServiceBuild
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build == nil {
			continue
		}
		if err := checkBuild(name, s.Build); err != nil {
			return nil, err
		}
		img := ImageOf(p, s)
		if !slices.ContainsFunc(out, func(b ServiceBuild) bool { return b.Image == img }) {
			out = append(out, ServiceBuild{Service: name, Image: img, Always: s.PullPolicy == types.PullPolicyBuild, Options: BuildOptionsOf(p, s, lo)})
		}
	}
	return out, nil
}

// Missing keeps of builds those whose image has says is not here (a not-found error),
// and those of pull_policy: build.
func Missing(ctx context.Context, builds []ServiceBuild, has func(ctx context.Context, image string) error) ([]ServiceBuild, error) {
	var out []ServiceBuild
	for _, b := range builds {
		if !b.Always {
			if err := has(ctx, b.Image); err == nil {
				continue
			} else if !errors.Is(err, errdefs.ErrNotFound) {
				return nil, err
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// Build builds the images of project p's services that have a build: section
// (docker compose build).
func Build(ctx context.Context, e *engine.Engine, p *types.Project, o BuildOptions, report func(Progress)) error {
	if report == nil {
		report = func(Progress) {}
	}
	builds, err := Builds(p, o.Load)
	if err == nil && o.Missing {
		builds, err = Missing(ctx, builds, func(ctx context.Context, image string) error {
			_, err := e.Images().Get(ctx, image)
			return err
		})
	}
	if err != nil {
		return err
	}
	for _, b := range builds {
		b.Options.NoCache = b.Options.NoCache || o.NoCache
		report(Progress{Kind: "Image", Name: b.Image, Status: "Building"})
		if _, err := e.Build(ctx, b.Options, nil); err != nil {
			return fmt.Errorf("service %s: %w", b.Service, err)
		}
		report(Progress{Kind: "Image", Name: b.Image, Status: "Built"})
	}
	return nil
}

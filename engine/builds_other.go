//go:build !linux

package engine

import (
	"context"

	"github.com/flyingdutchman/flyingdutchman/images/build"
)

func (e *Engine) build(ctx context.Context, opts build.Options, progress func(*build.Status)) (*build.Result, error) {
	if opts.InTree {
		return nil, errTreeBinds
	}
	return e.builds.Build(ctx, opts, progress)
}

func (e *Engine) buildDirContext(name string, owner uint32) (build.Options, func(), error) {
	return build.Options{}, func() {}, errTreeBinds
}

package engine

import (
	"context"
	"fmt"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// build runs a build; one of the tree reads its context and its Dockerfile through
// descriptors opened inside the tree's backing directory, whatever links are on
// the way, so that the tree's owner builds only from the tree.
func (e *Engine) build(ctx context.Context, opts build.Options, progress func(*build.Status)) (*build.Result, error) {
	if !opts.InTree {
		return e.builds.Build(ctx, opts, progress)
	}
	open := func(p string) (string, func(), error) {
		fd, err := e.openInTree(path.Clean("/" + p))
		if err != nil {
			return "", nil, errdefs.Invalid(fmt.Errorf("build: %s is not in the tree: %w", p, err))
		}
		return "/proc/self/fd/" + strconv.Itoa(fd), func() { unix.Close(fd) }, nil
	}
	dir, closeDir, err := open(opts.Context)
	if err != nil {
		return nil, err
	}
	defer closeDir()
	if opts.DockerfileInline == "" {
		df := opts.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if !path.IsAbs(df) {
			df = path.Join("/", opts.Context, df)
		}
		// Its directory is what BuildKit reads it from.
		dfDir, closeDf, err := open(path.Dir(df))
		if err != nil {
			return nil, err
		}
		defer closeDf()
		opts.Dockerfile = dfDir + "/" + path.Base(df)
	}
	opts.Context, opts.InTree = dir, false
	return e.builds.Build(ctx, opts, progress)
}

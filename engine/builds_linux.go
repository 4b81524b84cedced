package engine

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

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
	// Messages name the tree's paths, not the descriptors'.
	var names []string
	open := func(p string) (string, func(), error) {
		p = path.Clean("/" + p)
		fd, err := e.openInTree(p)
		if err != nil {
			return "", nil, errdefs.Invalid(fmt.Errorf("build: %s is not in the tree: %w", p, err))
		}
		fdPath := "/proc/self/fd/" + strconv.Itoa(fd)
		names = append(names, fdPath, p)
		return fdPath, func() { unix.Close(fd) }, nil
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
	res, err := e.builds.Build(ctx, opts, progress)
	if err != nil {
		// Longer descriptor paths first: /proc/self/fd/5 must not take /proc/self/fd/57.
		var pairs [][2]string
		for i := 0; i+1 < len(names); i += 2 {
			pairs = append(pairs, [2]string{names[i], names[i+1]})
		}
		sort.Slice(pairs, func(i, j int) bool { return len(pairs[i][0]) > len(pairs[j][0]) })
		var flat []string
		for _, p := range pairs {
			flat = append(flat, p[0], p[1])
		}
		err = &renamedError{error: err, msg: strings.NewReplacer(flat...).Replace(err.Error())}
	}
	return res, err
}

// buildDirContext is where build directory name's build reads its context: the
// directory itself (a path of the tree), or where its `source` link leads: a path of
// the tree when the link is relative, a directory of the host when it is absolute. A
// host directory must be the tree owner's (unless he is root): the daemon reads it as
// root on his behalf. It is pinned by a descriptor until release.
func (e *Engine) buildDirContext(name string, owner uint32) (build.Options, func(), error) {
	dir := path.Join("/builds", name)
	none := func() {}
	dfd, err := e.openInTree(dir)
	if err != nil {
		return build.Options{}, none, errdefs.NotFound(fmt.Errorf("builds/%s: %w", name, err))
	}
	defer unix.Close(dfd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dfd, "source", buf)
	if err != nil {
		// No link: the directory is the context.
		return build.Options{Context: dir, InTree: true}, none, nil
	}
	target := string(buf[:n])
	if !path.IsAbs(target) {
		return build.Options{Context: path.Join(dir, target), InTree: true}, none, nil
	}
	fd, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return build.Options{}, none, errdefs.Invalid(fmt.Errorf("builds/%s/source leads to %s: %w", name, target, err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return build.Options{}, none, err
	}
	if owner != 0 && st.Uid != owner {
		unix.Close(fd)
		return build.Options{}, none, errdefs.Unauthorized(fmt.Errorf("builds/%s/source leads to %s, which belongs to uid %d: a tree builds only from its owner's directories", name, target, st.Uid))
	}
	// Only what the owner could read himself goes into the image.
	var readAs *uint32
	if owner != 0 {
		readAs = &owner
	}
	return build.Options{Context: "/proc/self/fd/" + strconv.Itoa(fd), ReadAs: readAs}, func() { unix.Close(fd) }, nil
}

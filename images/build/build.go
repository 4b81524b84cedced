package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/tonistiigi/fsutil"
	"google.golang.org/grpc/codes"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// Options describe one build.
type Options struct {
	// Context is the build context's directory.
	Context string `json:"context"`
	// Dockerfile is the Dockerfile's path: relative to Context, or absolute
	// (default Dockerfile in Context). DockerfileInline is the Dockerfile itself, in
	// its place.
	Dockerfile       string `json:"dockerfile,omitempty"`
	DockerfileInline string `json:"dockerfileInline,omitempty"`
	// InTree says that Context and an absolute Dockerfile are paths of the tree,
	// resolved inside it (the engine does; the tree's owner may not be root).
	InTree bool `json:"inTree,omitempty"`
	// ReadAs, if set, is the user on whose behalf the daemon reads the context: only
	// what he could read is sent (a tree owner's source directory).
	ReadAs *uint32 `json:"-"`
	// Unprivileged builds on behalf of a user other than root (the tree's owner): RUN
	// steps get no network (buildkitd's is the host's, which is root's to give), and
	// the Dockerfile's own frontend (# syntax=), which could choose otherwise, is not
	// used.
	Unprivileged bool `json:"-"`
	// Tags name the image built (none: it is stored by its ID only).
	Tags []string `json:"tags,omitempty"`
	// Args are the build arguments (ARG), Labels the labels added to the image.
	Args   map[string]string `json:"args,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Target is the stage to build (default the last).
	Target string `json:"target,omitempty"`
	// Platforms to build for, as os/arch[/variant] (default the host's).
	Platforms []string `json:"platforms,omitempty"`
	// NoCache builds every step again; Pull looks for newer base images.
	NoCache bool `json:"noCache,omitempty"`
	Pull    bool `json:"pull,omitempty"`
	// Secrets are files RUN --mount=type=secret,id=ID reads.
	Secrets []Secret `json:"secrets,omitempty"`
	// Push pushes the image to its tags' registries too.
	Push bool `json:"push,omitempty"`
}

// Secret is a file a build may read as a secret.
type Secret struct {
	ID   string `json:"id"`
	File string `json:"file"`
}

// Result is what a build made.
type Result struct {
	// ID is the config digest of the image stored for the host (or the one platform
	// built), Digest that of its manifest.
	ID     string `json:"id"`
	Digest string `json:"digest"`
	// Tags are the image's names in the store.
	Tags []string `json:"tags"`
	// Platforms are those built.
	Platforms []string `json:"platforms"`
	// Pushed is the digest pushed (a manifest's, or a multi-platform index's).
	Pushed string `json:"pushed,omitempty"`
}

// Status is one update of a build's progress, as BuildKit reports it.
type Status = client.SolveStatus

// Build runs one build and stores its result. progress, if set, gets BuildKit's updates
// as they come (from one goroutine).
func (m *Manager) Build(ctx context.Context, opts Options, progress func(*Status)) (*Result, error) {
	if opts.InTree {
		return nil, errdefs.Invalid(errors.New("build: the tree's paths are resolved by the engine"))
	}
	if err := os.MkdirAll(m.cfg.Root, 0o700); err != nil {
		return nil, err
	}
	if opts.DockerfileInline != "" {
		dir, err := os.MkdirTemp(m.cfg.Root, "inline-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dockerfile = filepath.Join(dir, "Dockerfile")
		if err := os.WriteFile(opts.Dockerfile, []byte(opts.DockerfileInline), 0o600); err != nil {
			return nil, err
		}
	}
	attrs, locals, closeLocals, err := opts.frontend()
	if err != nil {
		return nil, err
	}
	defer closeLocals()
	tags, err := canonicalTags(opts.Tags)
	if err != nil {
		return nil, err
	}
	if opts.Push && len(tags) == 0 {
		return nil, errdefs.Invalid(errors.New("build: a push needs a tag (-t REGISTRY/REPOSITORY:TAG)"))
	}
	if err := m.ensurePlatforms(opts.Platforms); err != nil {
		return nil, err
	}
	attachables, err := m.sessionAttachables(opts.Secrets)
	if err != nil {
		return nil, err
	}
	c, err := m.Client(ctx)
	if err != nil {
		return nil, err
	}

	spool, err := os.CreateTemp(m.cfg.Root, "result-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	exports := []client.ExportEntry{{
		Type:   client.ExporterOCI,
		Attrs:  map[string]string{},
		Output: func(map[string]string) (io.WriteCloser, error) { return nopCloser{spool}, nil },
	}}
	if len(tags) > 0 {
		exports[0].Attrs["name"] = tags[0]
	}
	if opts.Push {
		exports = append(exports, client.ExportEntry{Type: client.ExporterImage, Attrs: map[string]string{
			"name": strings.Join(tags, ","), "push": "true",
		}})
	}
	solveOpt := client.SolveOpt{
		Exports:       exports,
		LocalMounts:   locals,
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		Session:       attachables,
	}

	ch := make(chan *client.SolveStatus)
	tail := newStepTail()
	var wg sync.WaitGroup
	wg.Go(func() {
		for st := range ch {
			tail.add(st)
			if progress != nil {
				progress(st)
			}
		}
	})
	resp, err := c.Solve(ctx, nil, solveOpt, ch)
	wg.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, classify(fmt.Errorf("build: %s%s", cleanError(err), tail.failed()), err)
	}

	res := &Result{Tags: tags, Platforms: opts.Platforms}
	if opts.Push {
		res.Pushed = resp.ExporterResponse["containerimage.digest"]
	}
	loaded, err := m.cfg.Store.LoadFile(ctx, spool, nil)
	if err != nil {
		return nil, fmt.Errorf("build: store the result: %w", err)
	}
	ref := ""
	switch {
	case len(loaded.Names) > 0:
		ref = loaded.Names[0]
	case len(loaded.IDs) > 0:
		ref = loaded.IDs[0]
	default:
		return nil, errors.New("build: the result held no image")
	}
	for _, t := range tags[min(1, len(tags)):] {
		if err := m.cfg.Store.Tag(ctx, ref, t); err != nil {
			return nil, fmt.Errorf("build: tag %s: %w", t, err)
		}
	}
	im, err := m.cfg.Store.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	res.ID, res.Digest = im.ID, im.Digest
	if len(res.Platforms) == 0 {
		res.Platforms = []string{im.Platform}
	}
	return res, nil
}

// frontend gives the Dockerfile frontend's attributes and the local directories it
// reads (release them with closeAll).
func (o *Options) frontend() (attrs map[string]string, locals map[string]fsutil.FS, closeAll func(), err error) {
	closeAll = func() {}
	if o.Context == "" {
		return nil, nil, closeAll, errdefs.Invalid(errors.New("build: no context directory"))
	}
	dir, err := filepath.Abs(o.Context)
	if err != nil {
		return nil, nil, closeAll, err
	}
	ctxFS, err := openContext(dir, o.ReadAs)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			err = fmt.Errorf("%s is not a directory", dir)
		}
		return nil, nil, closeAll, errdefs.Invalid(fmt.Errorf("build: context: %w", err))
	}
	// The Dockerfile's directory: inside the context, opened through it.
	df := o.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	var dfFS *contextFS
	if filepath.IsAbs(df) {
		dfFS, err = openContext(filepath.Dir(df), o.ReadAs)
	} else if sub := filepath.Dir(filepath.Clean(df)); sub == "." {
		dfFS = ctxFS
	} else {
		var r *os.Root
		if r, err = ctxFS.root.OpenRoot(sub); err == nil {
			dfFS = newContextFS(r, o.ReadAs)
		}
	}
	if err != nil {
		ctxFS.Close()
		return nil, nil, closeAll, errdefs.Invalid(fmt.Errorf("build: Dockerfile: %w", err))
	}
	closeAll = func() {
		ctxFS.Close()
		if dfFS != ctxFS {
			dfFS.Close()
		}
	}
	base := filepath.Base(df)
	if st, err := dfFS.root.Stat(base); err != nil {
		closeAll()
		return nil, nil, func() {}, errdefs.Invalid(fmt.Errorf("build: Dockerfile: %w", err))
	} else if !st.Mode().IsRegular() {
		closeAll()
		return nil, nil, func() {}, errdefs.Invalid(fmt.Errorf("build: Dockerfile %s is not a regular file", df))
	}
	attrs = map[string]string{"filename": base}
	if o.Target != "" {
		attrs["target"] = o.Target
	}
	for _, p := range o.Platforms {
		if _, err := images.ParsePlatform(p); err != nil {
			closeAll()
			return nil, nil, func() {}, err
		}
	}
	if len(o.Platforms) > 0 {
		attrs["platform"] = strings.Join(o.Platforms, ",")
	}
	for k, v := range o.Args {
		attrs["build-arg:"+k] = v
	}
	for k, v := range o.Labels {
		attrs["label:"+k] = v
	}
	if o.NoCache {
		attrs["no-cache"] = ""
	}
	if o.Pull {
		attrs["image-resolve-mode"] = "pull"
	}
	if o.Unprivileged {
		// With cmdline set, the Dockerfile frontend forwards to no other.
		attrs["force-network-mode"], attrs["cmdline"] = "none", ""
		if _, ok := o.Args["BUILDKIT_SYNTAX"]; ok {
			closeAll()
			return nil, nil, func() {}, errdefs.Invalid(errors.New("build: BUILDKIT_SYNTAX: another frontend is root's to choose"))
		}
	}
	return attrs, map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS}, closeAll, nil
}

// canonicalTags checks the tags and gives their canonical names, without repeats.
func canonicalTags(tags []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, t := range tags {
		r, err := images.ParseTag(t)
		if err != nil {
			return nil, err
		}
		if n := r.String(); !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// sessionAttachables are what the build's session offers buildkitd: registry
// credentials (as the image store finds them) and the secrets.
func (m *Manager) sessionAttachables(secrets []Secret) ([]session.Attachable, error) {
	out := []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: m.authConfig,
	})}
	if len(secrets) > 0 {
		var srcs []secretsprovider.Source
		for _, s := range secrets {
			if s.ID == "" || s.File == "" {
				return nil, errdefs.Invalid(fmt.Errorf("build: a secret needs an id and a file (id=ID,src=FILE), not %q", s.ID+"="+s.File))
			}
			srcs = append(srcs, secretsprovider.Source{ID: s.ID, FilePath: s.File})
		}
		store, err := secretsprovider.NewStore(srcs)
		if err != nil {
			return nil, errdefs.Invalid(fmt.Errorf("build: secret: %w", err))
		}
		out = append(out, secretsprovider.NewSecretProvider(store))
	}
	return out, nil
}

// authConfig gives buildkitd the credentials the engine's keychain has for host.
func (m *Manager) authConfig(ctx context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
	if host == authprovider.DockerHubRegistryHost {
		host = name.DefaultRegistry
	}
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		return types.AuthConfig{}, nil
	}
	kc := m.cfg.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	a, err := authn.Resolve(ctx, kc, reg)
	if err != nil {
		return types.AuthConfig{}, err
	}
	ac, err := a.Authorization()
	if err != nil {
		return types.AuthConfig{}, err
	}
	return types.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken, ServerAddress: host,
	}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// classify gives a failed build's error (msg, from BuildKit's err) its kind: a build
// that failed for want of buildkitd, of a registry or of room, or of credentials, or
// else for what the Dockerfile or its steps did: invalid.
func classify(msg, err error) error {
	s := err.Error()
	// A step's failure or the Dockerfile's, whatever words its command line holds.
	if strings.Contains(s, "did not complete successfully") || strings.Contains(s, "dockerfile parse error") {
		return errdefs.Invalid(msg)
	}
	switch code := grpcerrors.Code(err); {
	case code == codes.Unavailable || code == codes.Canceled:
		return errdefs.Unavailable(fmt.Errorf("%w (buildkitd went away; see its log under the data root's buildkit/)", msg))
	case code == codes.ResourceExhausted || strings.Contains(s, "no space left on device"):
		return errdefs.NoSpace(msg)
	case code == codes.Unauthenticated || strings.Contains(s, "401 Unauthorized") || strings.Contains(s, "failed to authorize"):
		return errdefs.Unauthorized(msg)
	case strings.Contains(s, "connection refused") || strings.Contains(s, "no such host") || strings.Contains(s, "i/o timeout"):
		return errdefs.Unavailable(msg)
	}
	return errdefs.Invalid(msg)
}

// cleanError is BuildKit's error without its gRPC wrapping.
func cleanError(err error) string {
	s := err.Error()
	for _, p := range []string{"rpc error: code = Unknown desc = ", "failed to solve: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// stepTail keeps the last lines of each step's output, to quote the failed step's in the
// build's error.
type stepTail struct {
	names map[string]string
	errs  map[string]string
	order []string
	logs  map[string][]string
}

const tailLines = 20

func newStepTail() *stepTail {
	return &stepTail{names: map[string]string{}, errs: map[string]string{}, logs: map[string][]string{}}
}

func (t *stepTail) add(st *client.SolveStatus) {
	for _, v := range st.Vertexes {
		d := v.Digest.String()
		if _, ok := t.names[d]; !ok {
			t.order = append(t.order, d)
		}
		t.names[d] = v.Name
		if v.Error != "" {
			t.errs[d] = v.Error
		}
	}
	for _, l := range st.Logs {
		d := l.Vertex.String()
		lines := append(t.logs[d], strings.Split(strings.TrimRight(string(l.Data), "\n"), "\n")...)
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
		t.logs[d] = lines
	}
}

// failed describes the failed steps: their names and the end of their output.
func (t *stepTail) failed() string {
	var b strings.Builder
	var failed []string
	for _, d := range t.order {
		if e := t.errs[d]; e != "" && !strings.Contains(e, "context canceled") {
			failed = append(failed, d)
		}
	}
	for _, d := range failed {
		fmt.Fprintf(&b, "\n%s", t.names[d])
		for _, l := range t.logs[d] {
			fmt.Fprintf(&b, "\n  | %s", l)
		}
	}
	return b.String()
}

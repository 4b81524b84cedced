package fs

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// imagePath is where the image name ref lives under images/: the registry (omitted for
// Docker Hub), the repository path, then the tag. It is nil for a digest reference.
//
//	docker.io/library/alpine:3.20   alpine/3.20
//	docker.io/team/app:v1           team/app/v1
//	127.0.0.1:5000/team/app:v1      127.0.0.1:5000/team/app/v1
func imagePath(name string) []string {
	ref, err := images.ParseReference(name)
	if err != nil || ref.Tag() == "" {
		return nil
	}
	repo := ref.Repository()
	if r, ok := strings.CutPrefix(repo, "docker.io/library/"); ok {
		repo = r
	} else if r, ok := strings.CutPrefix(repo, "docker.io/"); ok {
		repo = r
	}
	return append(strings.Split(repo, "/"), ref.Tag())
}

// named is an image with one of its names.
type named struct {
	name string
	im   *images.Image
}

// imagesUnder lists the tagged images whose path starts with prefix.
func (t *tree) imagesUnder(ctx context.Context, prefix []string) ([]named, [][]string, error) {
	ims, err := t.eng.Images().List(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []named
	var paths [][]string
	for _, im := range ims {
		for _, n := range im.Names {
			p := imagePath(n)
			if len(p) <= len(prefix) || !hasPrefix(p, prefix) {
				continue
			}
			out = append(out, named{name: n, im: im})
			paths = append(paths, p)
		}
	}
	return out, paths, nil
}

func hasPrefix(p, prefix []string) bool {
	for i := range prefix {
		if p[i] != prefix[i] {
			return false
		}
	}
	return true
}

// imagesDir is images/: pull, error, by-digest/ and the repository paths.
func (t *tree) imagesDir() *dirNode {
	fixed := []entry{
		{name: "pull", mode: syscall.S_IFREG | 0o644, key: "images/pull", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.pullFile() }},
		t.value("error", "images/error", func(context.Context) ([]byte, error) { return line(t.imageErr.get()), nil }),
		t.dir("by-digest", "images/by-digest", stableTimeout, func() *dirNode { return t.byDigestDir() }),
	}
	d := t.imagePathDir(nil)
	paths := d.entries
	d.entries = func(ctx context.Context) ([]entry, error) {
		es, err := paths(ctx)
		if err != nil {
			return nil, err
		}
		out := append([]entry(nil), fixed...)
		for _, e := range es {
			if e.name != "pull" && e.name != "error" && e.name != "by-digest" {
				out = append(out, e)
			}
		}
		return out, nil
	}
	d.find = nil
	return d
}

// imagePathDir is a directory of images/ at prefix: a repository path. Its entries are
// the next components of the paths below it; a component that ends a path is a tag (an
// image directory), and a tag wins over a repository path of the same name.
func (t *tree) imagePathDir(prefix []string) *dirNode {
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(ctx context.Context) ([]entry, error) {
		ns, paths, err := t.imagesUnder(ctx, prefix)
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		var out []entry
		for i, n := range ns {
			p := paths[i]
			name := p[len(prefix)]
			var e entry
			if len(p) == len(prefix)+1 {
				e = t.imageEntry(name, n.name, n.im)
			} else {
				sub := append(append([]string(nil), prefix...), name)
				e = t.dir(name, "images/"+strings.Join(sub, "/"), noTimeout, func() *dirNode { return t.imagePathDir(sub) })
			}
			if j, ok := seen[name]; ok {
				if strings.HasPrefix(e.key, "image@") && !strings.HasPrefix(out[j].key, "image@") {
					out[j] = e
				}
				continue
			}
			seen[name] = len(out)
			out = append(out, e)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
		return out, nil
	}}
}

// byDigestDir is images/by-digest/: every image by its manifest digest, sha256-HEX.
func (t *tree) byDigestDir() *dirNode {
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(ctx context.Context) ([]entry, error) {
		ims, err := t.eng.Images().List(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]entry, 0, len(ims))
		for _, im := range ims {
			out = append(out, t.imageEntry(strings.Replace(im.Digest, ":", "-", 1), "", im))
		}
		return out, nil
	}}
}

// imageEntry is the directory of image im under one of its names (or none, under
// by-digest). Its inode is that of the name and the image: a tag moved to another image
// is a new directory.
func (t *tree) imageEntry(dirName, name string, im *images.Image) entry {
	digest := im.Digest
	return entry{name: dirName, mode: syscall.S_IFDIR | 0o555, key: "image@" + name + "@" + digest, timeout: noTimeout,
		node: func() gofs.InodeEmbedder { return t.imageDir(name, digest) }}
}

// imageDir is one image's directory: name is the name it is shown under ("" under
// by-digest), digest its manifest digest.
func (t *tree) imageDir(name, digest string) *dirNode {
	key := "image@" + name + "@" + digest + "/"
	ref := name
	if ref == "" {
		ref = digest
	}
	get := func(ctx context.Context) (*images.Image, error) {
		im, err := t.eng.Images().Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if im.Digest != digest {
			// The name moved to another image since this directory was looked up.
			return nil, errdefs.NotFound(fmt.Errorf("image %s is no longer %s", name, digest))
		}
		return im, nil
	}
	field := func(fn func(im *images.Image) string) func(ctx context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) {
			im, err := get(ctx)
			if err != nil {
				return nil, err
			}
			return line(fn(im)), nil
		}
	}
	entries := []entry{
		t.value("ref", key+"ref", field(func(im *images.Image) string {
			if name != "" {
				return name
			}
			if len(im.RepoDigests) > 0 {
				return im.RepoDigests[0]
			}
			return im.Digest
		})),
		t.value("digest", key+"digest", field(func(im *images.Image) string { return im.Digest })),
		t.value("id", key+"id", field(func(im *images.Image) string { return im.ID })),
		t.value("size", key+"size", field(func(im *images.Image) string { return fmt.Sprint(im.Size) })),
		t.value("platform", key+"platform", field(func(im *images.Image) string { return im.Platform })),
		t.value("created", key+"created", field(func(im *images.Image) string { return im.Created.UTC().Format(time.RFC3339) })),
		t.value("manifest.json", key+"manifest.json", func(ctx context.Context) ([]byte, error) {
			if _, err := get(ctx); err != nil {
				return nil, err
			}
			return t.eng.Images().Blob(digest)
		}),
		t.value("config.json", key+"config.json", func(ctx context.Context) ([]byte, error) {
			im, err := get(ctx)
			if err != nil {
				return nil, err
			}
			return t.eng.Images().Blob(im.ID)
		}),
		t.value("history", key+"history", func(ctx context.Context) ([]byte, error) {
			im, err := get(ctx)
			if err != nil {
				return nil, err
			}
			return renderHistory(im), nil
		}),
		{name: "ctl", mode: syscall.S_IFREG | 0o644, key: key + "ctl", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.imageCtl(ref) }},
		{name: "layers", mode: syscall.S_IFDIR | 0o555, key: key + "layers", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.layersDir(key+"layers/", get) }},
		{name: "rootfs", mode: syscall.S_IFDIR | 0o755, key: key + "rootfs", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder {
				var path string
				if im, err := get(context.Background()); err == nil {
					path = t.eng.Images().ViewPath(im)
				}
				return t.newPassDir(path, key+"rootfs", func(ctx context.Context) error {
					_, err := t.eng.Images().View(ctx, digest)
					return err
				})
			}},
	}
	// The names are fixed for the image (a tag moved elsewhere is another directory).
	for i := range entries {
		entries[i].timeout = fixedTimeout
	}
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(ctx context.Context) ([]entry, error) {
		if _, err := get(ctx); err != nil {
			return nil, err
		}
		return entries, nil
	}}
}

// layersDir is an image's layers/: NN-sha256-HEX/ per layer, bottom first, each the
// layer's unpacked content, read-only. Every directory has one parent, as the kernel
// wants: a layer two images share shows in each under inode numbers of its own (see
// newPassDir).
func (t *tree) layersDir(prefix string, get func(ctx context.Context) (*images.Image, error)) *dirNode {
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(ctx context.Context) ([]entry, error) {
		im, err := get(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]entry, 0, len(im.Layers))
		for i, l := range im.Layers {
			chain := l.ChainID
			name := fmt.Sprintf("%02d-%s", i, strings.Replace(l.Digest, ":", "-", 1))
			key := prefix + name
			out = append(out, entry{name: name,
				mode: syscall.S_IFDIR | 0o755, key: key, timeout: stableTimeout,
				node: func() gofs.InodeEmbedder {
					path, _ := t.eng.Images().LayerPath(chain)
					return t.newPassDir(path, key, func(ctx context.Context) error {
						_, err := t.eng.Images().LayerPath(chain)
						return err
					})
				}})
		}
		return out, nil
	}}
}

// renderHistory is an image's history, oldest first: one line per step, its time and
// the command that made it, as `docker history` shows them.
func renderHistory(im *images.Image) []byte {
	var b strings.Builder
	if im.Config == nil {
		return nil
	}
	for _, h := range im.Config.History {
		by := strings.Join(strings.Fields(h.CreatedBy), " ")
		if h.EmptyLayer {
			by += " (no layer)"
		}
		fmt.Fprintf(&b, "%s\t%s\n", h.Created.UTC().Format(time.RFC3339), by)
	}
	return []byte(b.String())
}

// imageCtl is an image's ctl: rm [-f] | tag NEWREF | push [REF].
func (t *tree) imageCtl(ref string) *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(ctx context.Context) string { return "rm [-f]\ntag NEWREF\npush [REF]\n" },
		run: func(ctx context.Context, verb string, args []string) error {
			switch verb {
			case "rm":
				force, err := rmForce(args)
				if err != nil {
					return err
				}
				_, err = t.eng.RemoveImage(ctx, ref, force)
				return err
			case "tag":
				if len(args) != 1 {
					return errdefs.Invalid(fmt.Errorf("tag takes one new reference: tag NEWREF"))
				}
				return t.eng.TagImage(ctx, ref, args[0])
			case "push":
				if len(args) > 1 {
					return errdefs.Invalid(fmt.Errorf("push takes at most one reference: push [REF]"))
				}
				target := ""
				if len(args) == 1 {
					target = args[0]
				}
				_, err := t.eng.PushImage(ctx, ref, target, nil)
				return err
			}
			return errdefs.Invalid(fmt.Errorf("image %s: unknown verb %q: the verbs are rm [-f], tag NEWREF, push [REF]", ref, verb))
		},
		failed: func(_ string, err error) {
			t.imageErr.set(err.Error())
			t.eng.ReportImageError(ref, err)
		},
	}
}

// pullFile is images/pull: each line written is a reference to pull, pulled before the
// write returns; reading it shows the pulls under way.
func (t *tree) pullFile() *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(ctx context.Context) string { return renderPulls(t.eng.Images().Pulls()) },
		run: func(ctx context.Context, ref string, args []string) error {
			if len(args) > 0 {
				return errdefs.Invalid(fmt.Errorf("pull: one reference per line, got %q", strings.Join(append([]string{ref}, args...), " ")))
			}
			_, err := t.eng.PullImage(ctx, ref)
			return err
		},
		failed: func(ref string, err error) {
			t.imageErr.set(err.Error())
			t.eng.ReportImageError(ref, err)
		},
	}
}

// renderPulls is what reading images/pull shows: one line per pull under way, then one
// per layer, as `docker pull` shows them.
func renderPulls(ps []images.Progress) string {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Ref < ps[j].Ref })
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s: %s\n", p.Ref, p.Status)
		for _, l := range p.Layers {
			short := strings.TrimPrefix(l.Digest, "sha256:")
			if len(short) > 12 {
				short = short[:12]
			}
			fmt.Fprintf(&b, "  %s: %s %d/%d\n", short, l.Status, l.Current, l.Size)
		}
	}
	return b.String()
}

// lastError is the message of the last failed write to a part of the tree that has no
// engine object to keep it (images/error).
type lastError struct {
	mu  sync.Mutex
	msg string
}

func (e *lastError) set(msg string) {
	e.mu.Lock()
	e.msg = msg
	e.mu.Unlock()
}

func (e *lastError) get() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.msg
}

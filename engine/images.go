package engine

import (
	"context"
	"io"

	"github.com/flyingdutchman/flyingdutchman/images"
)

// The image operations that change the store go through the engine, so that each is an
// event like a container's.

func (e *Engine) publishImage(action, id, name string) {
	e.events.publish(Event{Type: "image", Action: action, ID: id, Name: name})
}

// ReportImageError records a failed image operation made outside the engine (a write
// to the tree) as an event.
func (e *Engine) ReportImageError(ref string, failure error) {
	e.events.publish(Event{Type: "image", Action: "error", Name: ref, Attributes: map[string]string{"error": failure.Error()}})
}

// PullImage pulls ref into the image store.
func (e *Engine) PullImage(ctx context.Context, ref string, opts ...images.PullOption) (*images.Image, error) {
	im, err := e.images.Pull(ctx, ref, opts...)
	if err == nil {
		name := ref
		if r, perr := images.ParseReference(ref); perr == nil {
			name = r.String()
		}
		e.publishImage("pull", im.ID, name)
	}
	return im, err
}

// TagImage gives the image source also the name target.
func (e *Engine) TagImage(ctx context.Context, source, target string) error {
	if err := e.images.Tag(ctx, source, target); err != nil {
		return err
	}
	if im, err := e.images.Get(ctx, target); err == nil {
		e.publishImage("tag", im.ID, target)
	}
	return nil
}

// RemoveImage removes a name or an image.
func (e *Engine) RemoveImage(ctx context.Context, ref string, force bool) (*images.Deleted, error) {
	del, err := e.images.Delete(ctx, ref, force)
	if err != nil {
		return nil, err
	}
	for _, n := range del.Untagged {
		e.publishImage("untag", "", n)
	}
	for _, id := range del.Deleted {
		e.publishImage("delete", id, "")
	}
	e.imagesGone(ctx, del)
	return del, nil
}

// ImageKeeper is a runtime that keeps copies of images (the vm runtime's erofs disks):
// after images go, it is told the manifest digests of those that remain.
type ImageKeeper interface {
	KeepImages(digests map[string]bool)
}

// imagesGone tells the runtimes that keep copies of images which images remain.
func (e *Engine) imagesGone(ctx context.Context, del *images.Deleted) {
	if len(del.Deleted) == 0 {
		return
	}
	ims, err := e.images.List(ctx)
	if err != nil {
		return
	}
	live := map[string]bool{}
	for _, im := range ims {
		live[im.Digest] = true
	}
	for _, r := range e.runtimes {
		if k, ok := r.(ImageKeeper); ok {
			k.KeepImages(live)
		}
	}
}

// PruneImages removes images without names that no container uses.
func (e *Engine) PruneImages(ctx context.Context) (*images.Deleted, error) {
	del, err := e.images.Prune(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range del.Deleted {
		e.publishImage("delete", id, "")
	}
	e.imagesGone(ctx, del)
	return del, nil
}

// PushImage pushes the image ref names to target (or its own name).
func (e *Engine) PushImage(ctx context.Context, ref, target string, progress func(images.PushProgress)) (string, error) {
	digest, err := e.images.Push(ctx, ref, target, progress)
	if err == nil {
		if target == "" {
			target = ref
		}
		e.publishImage("push", digest, target)
	}
	return digest, err
}

// LoadImages loads an image archive.
func (e *Engine) LoadImages(ctx context.Context, r io.Reader, progress func(images.Progress)) (*images.Loaded, error) {
	loaded, err := e.images.Load(ctx, r, progress)
	if err == nil {
		for _, n := range loaded.Names {
			e.publishImage("load", "", n)
		}
		for _, id := range loaded.IDs {
			e.publishImage("load", id, "")
		}
	}
	return loaded, err
}

package engine

import (
	"context"

	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// Build builds an image from a Dockerfile through BuildKit and stores it (see
// images/build). progress, if set, gets BuildKit's updates as they come.
func (e *Engine) Build(ctx context.Context, opts build.Options, progress func(*build.Status)) (*build.Result, error) {
	name := opts.Context
	res, err := e.build(ctx, opts, progress)
	if err != nil {
		e.events.publish(Event{Type: "image", Action: "build-error", Name: name, Attributes: map[string]string{"error": err.Error()}})
		return nil, err
	}
	name = ""
	if len(res.Tags) > 0 {
		name = res.Tags[0]
	}
	e.publishImage("build", res.ID, name)
	if res.Pushed != "" {
		for _, t := range res.Tags {
			e.publishImage("push", res.Pushed, t)
		}
	}
	return res, nil
}

// BuildkitdPid is the pid of the engine's buildkitd, if it runs.
func (e *Engine) BuildkitdPid() (int, bool) { return e.builds.Running() }

// renamedError is an error whose message was rewritten (paths of descriptors named as
// the user knows them); what it wraps still counts.
type renamedError struct {
	error
	msg string
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.error }

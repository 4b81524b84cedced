package api

import (
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// The wire types are the engine's own; the aliases name them for clients.
type (
	Info         = engine.Info
	Image        = images.Image
	Progress     = images.Progress
	PushProgress = images.PushProgress
	Deleted      = images.Deleted
	Loaded       = images.Loaded
)

// VersionInfo answers GET /v1/version.
type VersionInfo struct {
	Version    string `json:"version"`
	APIVersion string `json:"apiVersion"`
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// PullRequest is the body of POST /v1/images/pull.
type PullRequest struct {
	Ref      string `json:"ref"`
	Platform string `json:"platform,omitempty"`
}

// TagRequest is the body of POST /v1/images/tag.
type TagRequest struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// PushRequest is the body of POST /v1/images/push.
type PushRequest struct {
	Ref    string `json:"ref"`
	Target string `json:"target,omitempty"`
}

// StreamLine is one line of a streamed answer: progress, then a result or an error.
type StreamLine struct {
	Progress *Progress     `json:"progress,omitempty"`
	Push     *PushProgress `json:"push,omitempty"`
	Image    *Image        `json:"image,omitempty"`
	Loaded   *Loaded       `json:"loaded,omitempty"`
	Digest   string        `json:"digest,omitempty"`
	Error    *Error        `json:"error,omitempty"`
}

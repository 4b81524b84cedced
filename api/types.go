package api

import (
	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/images"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// The wire types are the engine's own; the aliases name them for clients.
type (
	Info         = engine.Info
	VMAccel      = vm.AccelInfo
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
	// Compose is a step of compose up or down; Done ends their answer.
	Compose *compose.Progress `json:"compose,omitempty"`
	// Build is BuildKit's progress of a build; Built ends a build's answer.
	Build *build.Status `json:"build,omitempty"`
	Built *build.Result `json:"built,omitempty"`
	Done  bool          `json:"done,omitempty"`
	Error *Error        `json:"error,omitempty"`
}

// CreateRequest is the body of POST /v1/containers.
type CreateRequest struct {
	Name string      `json:"name,omitempty"`
	Spec engine.Spec `json:"spec"`
}

// ExecRequest is the body of POST /v1/containers/{id}/exec.
type ExecRequest struct {
	Args       []string `json:"args"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	Tty        bool     `json:"tty,omitempty"`
	Stdin      bool     `json:"stdin,omitempty"`
}

// WaitResponse answers POST /v1/containers/{id}/wait.
type WaitResponse struct {
	ExitCode int `json:"exitCode"`
}

// Container, Event and Stats are the engine's own.
type (
	Container = engine.Container
	Event     = engine.Event
)

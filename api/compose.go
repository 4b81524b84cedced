package api

import (
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/compose"
)

// ComposeUpRequest is the body of POST /v1/compose/up: the project to load (files by
// their absolute paths, the caller's environment) and the services to bring up.
type ComposeUpRequest struct {
	compose.Options
	Services []string `json:"services,omitempty"`
	// Builds say which images of services with a build: section are built: the
	// missing ones, all (build), or none (noBuild).
	compose.UpBuilds
}

// ComposeDownRequest is the body of POST /v1/compose/down.
type ComposeDownRequest struct {
	Name    string `json:"name"`
	Volumes bool   `json:"volumes,omitempty"`
}

// composeUp loads the project the request names and brings it up, streaming its steps.
func (s *Server) composeUp(w http.ResponseWriter, r *http.Request) error {
	var req ComposeUpRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	// A file that does not load is a plain error answer, before any stream.
	if _, err := compose.Load(r.Context(), req.Options); err != nil {
		return err
	}
	st := newStream(w)
	err := s.projects.Up(r.Context(), req.Options, req.Services, req.UpBuilds, func(p compose.Progress) { st.send(StreamLine{Compose: &p}) })
	st.end(err, func() StreamLine { return StreamLine{Done: true} })
	return nil
}

// composeDown takes a project down, streaming its steps.
func (s *Server) composeDown(w http.ResponseWriter, r *http.Request) error {
	var req ComposeDownRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return badRequest("no project name")
	}
	st := newStream(w)
	err := s.projects.Down(r.Context(), req.Name, compose.DownOptions{
		Volumes:  req.Volumes,
		Progress: func(p compose.Progress) { st.send(StreamLine{Compose: &p}) },
	})
	st.end(err, func() StreamLine { return StreamLine{Done: true} })
	return nil
}

// ComposeVerbRequest is the body of POST /v1/compose/stop and /v1/compose/start.
type ComposeVerbRequest struct {
	Name string `json:"name"`
	// Services are the services to stop or start; none: the whole project.
	Services []string `json:"services,omitempty"`
}

// composeStop stops a project: its re-applies then start nothing, until start or up.
func (s *Server) composeStop(w http.ResponseWriter, r *http.Request) error {
	var req ComposeVerbRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.projects.Stop(r.Context(), req.Name, req.Services); err != nil {
		return err
	}
	return noContent(w)
}

// composeStart starts a stopped project.
func (s *Server) composeStart(w http.ResponseWriter, r *http.Request) error {
	var req ComposeVerbRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.projects.Start(r.Context(), req.Name, req.Services); err != nil {
		return err
	}
	return noContent(w)
}

// composeProjects lists the projects brought up through the daemon.
func (s *Server) composeProjects(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.projects.Projects())
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// Server serves the API for one engine.
type Server struct {
	eng      *engine.Engine
	projects *compose.Manager
	version  string
	log      *slog.Logger
	mux      *http.ServeMux
}

// NewServer returns the API handler of eng and its compose projects.
func NewServer(eng *engine.Engine, projects *compose.Manager, version string, log *slog.Logger) *Server {
	s := &Server{eng: eng, projects: projects, version: version, log: log, mux: http.NewServeMux()}
	routes := []struct {
		pattern string
		handler func(http.ResponseWriter, *http.Request) error
	}{
		{"GET /v1/version", s.getVersion},
		{"GET /v1/info", s.getInfo},
		{"GET /v1/images", s.imageList},
		{"GET /v1/images/inspect", s.imageInspect},
		{"POST /v1/images/pull", s.imagePull},
		{"POST /v1/compose/up", s.composeUp},
		{"POST /v1/compose/down", s.composeDown},
		{"GET /v1/compose/projects", s.composeProjects},
		{"POST /v1/compose/stop", s.composeStop},
		{"POST /v1/compose/start", s.composeStart},
		{"POST /v1/images/tag", s.imageTag},
		{"DELETE /v1/images", s.imageRemove},
		{"POST /v1/images/prune", s.imagePrune},
		{"POST /v1/images/push", s.imagePush},
		{"GET /v1/images/save", s.imageSave},
		{"POST /v1/images/load", s.imageLoad},
		{"POST /v1/build", s.build},
		{"POST /v1/containers", s.containerCreate},
		{"GET /v1/containers", s.containerList},
		{"GET /v1/containers/{id}", s.containerInspect},
		{"DELETE /v1/containers/{id}", s.containerRemove},
		{"POST /v1/containers/{id}/start", s.containerStart},
		{"POST /v1/containers/{id}/stop", s.containerStop},
		{"POST /v1/containers/{id}/restart", s.containerRestart},
		{"POST /v1/containers/{id}/kill", s.containerKill},
		{"POST /v1/containers/{id}/pause", s.containerPause},
		{"POST /v1/containers/{id}/unpause", s.containerUnpause},
		{"POST /v1/containers/{id}/rename", s.containerRename},
		{"POST /v1/containers/{id}/wait", s.containerWait},
		{"POST /v1/containers/{id}/resize", s.containerResize},
		{"POST /v1/containers/{id}/attach", s.containerAttach},
		{"POST /v1/containers/{id}/exec", s.containerExec},
		{"GET /v1/containers/{id}/logs", s.containerLogs},
		{"GET /v1/containers/{id}/stats", s.containerStats},
		{"GET /v1/events", s.events},
		{"POST /v1/volumes", s.volumeCreate},
		{"GET /v1/volumes", s.volumeList},
		{"GET /v1/volumes/{name}", s.volumeInspect},
		{"DELETE /v1/volumes/{name}", s.volumeRemove},
		{"POST /v1/volumes/prune", s.volumePrune},
		{"POST /v1/networks", s.networkCreate},
		{"GET /v1/networks", s.networkList},
		{"GET /v1/networks/{name}", s.networkInspect},
		{"DELETE /v1/networks/{name}", s.networkRemove},
		{"POST /v1/networks/prune", s.networkPrune},
		{"POST /v1/networks/{name}/connect", s.networkConnect},
		{"POST /v1/networks/{name}/disconnect", s.networkDisconnect},
		{"GET /v1/kernels", s.kernelList},
		{"POST /v1/kernels/pull", s.kernelPull},
		{"POST /v1/kernels/push", s.kernelPush},
		{"DELETE /v1/kernels/{name}", s.kernelRemove},
		{"POST /v1/kernels/{name}/default", s.kernelDefault},
	}
	for _, r := range routes {
		s.mux.Handle(r.pattern, s.wrap(r.handler))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), Code: "not_found", Status: http.StatusNotFound})
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) wrap(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		err := h(w, r)
		if err != nil {
			e := toError(err)
			if e.Status >= 500 {
				s.log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", e.Message)
			}
			writeError(w, e)
		}
		s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
	})
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

// stream writes JSON lines to a client as they come, flushing each.
type stream struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, enc: json.NewEncoder(w)}
}

func (st *stream) send(line StreamLine) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.enc.Encode(line)
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
}

// end sends the final line: the error, or what ok makes.
func (st *stream) end(err error, ok func() StreamLine) {
	if err != nil {
		st.send(StreamLine{Error: toError(err)})
		return
	}
	st.send(ok())
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, VersionInfo{
		Version: s.version, APIVersion: Version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
	})
}

func (s *Server) getInfo(w http.ResponseWriter, r *http.Request) error {
	info, err := s.eng.Info(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *Server) imageList(w http.ResponseWriter, r *http.Request) error {
	list, err := s.eng.Images().List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []*images.Image{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) imageInspect(w http.ResponseWriter, r *http.Request) error {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		return badRequest("missing query parameter ref")
	}
	im, err := s.eng.Images().Get(r.Context(), ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, im)
}

func (s *Server) imagePull(w http.ResponseWriter, r *http.Request) error {
	var req PullRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if _, err := images.ParseReference(req.Ref); err != nil {
		return err
	}
	var opts []images.PullOption
	if req.Platform != "" {
		p, err := images.ParsePlatform(req.Platform)
		if err != nil {
			return err
		}
		opts = append(opts, images.WithPlatform(p))
	}
	st := newStream(w)
	opts = append(opts, images.WithProgress(func(p images.Progress) { st.send(StreamLine{Progress: &p}) }))
	im, err := s.eng.PullImage(r.Context(), req.Ref, opts...)
	st.end(err, func() StreamLine { return StreamLine{Image: im} })
	return nil
}

func (s *Server) imageTag(w http.ResponseWriter, r *http.Request) error {
	var req TagRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.eng.TagImage(r.Context(), req.Source, req.Target); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) imageRemove(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ref := q.Get("ref")
	if ref == "" {
		return badRequest("missing query parameter ref")
	}
	force, err := boolParam(q.Get("force"))
	if err != nil {
		return err
	}
	del, err := s.eng.RemoveImage(r.Context(), ref, force)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, del)
}

func boolParam(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("invalid boolean %q", v)
	}
	return b, nil
}

func (s *Server) imagePrune(w http.ResponseWriter, r *http.Request) error {
	del, err := s.eng.PruneImages(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, del)
}

func (s *Server) imagePush(w http.ResponseWriter, r *http.Request) error {
	var req PushRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	target := req.Target
	if target == "" {
		target = req.Ref
	}
	if _, err := images.ParseTag(target); err != nil {
		return err
	}
	if _, err := s.eng.Images().Get(r.Context(), req.Ref); err != nil {
		return err
	}
	st := newStream(w)
	digest, err := s.eng.PushImage(r.Context(), req.Ref, req.Target, func(p images.PushProgress) {
		st.send(StreamLine{Push: &p})
	})
	st.end(err, func() StreamLine { return StreamLine{Digest: digest} })
	return nil
}

func (s *Server) imageSave(w http.ResponseWriter, r *http.Request) error {
	refs := r.URL.Query()["ref"]
	if len(refs) == 0 {
		return badRequest("missing query parameter ref")
	}
	for _, ref := range refs {
		if _, err := s.eng.Images().Get(r.Context(), ref); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := s.eng.Images().Save(r.Context(), w, refs); err != nil {
		// The status is sent; cutting the connection tells the client the archive is
		// incomplete.
		s.log.Error("save failed mid-stream", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) imageLoad(w http.ResponseWriter, r *http.Request) error {
	st := newStream(w)
	loaded, err := s.eng.LoadImages(r.Context(), r.Body, func(p images.Progress) { st.send(StreamLine{Progress: &p}) })
	st.end(err, func() StreamLine { return StreamLine{Loaded: loaded} })
	return nil
}

// Listen opens the unix socket at path, owner-only. A socket file left by a daemon that
// died is replaced; one a live daemon answers on is an error.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use by another daemon", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Serve serves the API on l until ctx ends, then shuts down, giving requests in flight
// up to grace to finish before they are cancelled.
func (s *Server) Serve(ctx context.Context, l net.Listener, grace time.Duration) error {
	base, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("requests still running after the grace period are cancelled", "grace", grace)
		cancelRequests()
		srv.Close()
		err = nil
	}
	<-done
	return err
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/images/build"
)

// BuildRequest is the body of POST /v1/build. Its paths (context, Dockerfile, secrets'
// files) are read by the daemon: the client sends them absolute.
type BuildRequest = build.Options

// build runs a build, streaming BuildKit's progress as {"build": STATUS} lines and
// ending with {"built": RESULT} or the error.
func (s *Server) build(w http.ResponseWriter, r *http.Request) error {
	var req BuildRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	st := newStream(w)
	res, err := s.eng.Build(r.Context(), req, func(p *build.Status) { st.send(StreamLine{Build: p}) })
	st.end(err, func() StreamLine { return StreamLine{Built: res} })
	return nil
}

// Build runs a build, handing BuildKit's progress to progress as it comes.
func (c *Client) Build(ctx context.Context, req BuildRequest, progress func(*build.Status)) (*build.Result, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/build", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return nil, err
	}
	last, err := readStream(resp, func(l StreamLine) {
		if progress != nil && l.Build != nil {
			progress(l.Build)
		}
	})
	return last.Built, err
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/compose"
)

// ComposeUp brings a project up, handing each step to progress.
func (c *Client) ComposeUp(ctx context.Context, req ComposeUpRequest, progress func(compose.Progress)) error {
	return c.composeStream(ctx, "/compose/up", req, progress)
}

// ComposeDown takes a project down, handing each step to progress.
func (c *Client) ComposeDown(ctx context.Context, req ComposeDownRequest, progress func(compose.Progress)) error {
	return c.composeStream(ctx, "/compose/down", req, progress)
}

func (c *Client) composeStream(ctx context.Context, path string, req any, progress func(compose.Progress)) error {
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, http.MethodPost, path, nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return err
	}
	_, err = readStream(resp, func(l StreamLine) {
		if progress != nil && l.Compose != nil {
			progress(*l.Compose)
		}
	})
	return err
}

// ComposeStop stops project name, or some of its services. A whole project stopped
// starts nothing at its saves, until ComposeStart or up.
func (c *Client) ComposeStop(ctx context.Context, name string, services []string) error {
	return c.sendJSON(ctx, http.MethodPost, "/compose/stop", nil, ComposeVerbRequest{Name: name, Services: services}, nil)
}

// ComposeStart starts project name, or some of its services, again.
func (c *Client) ComposeStart(ctx context.Context, name string, services []string) error {
	return c.sendJSON(ctx, http.MethodPost, "/compose/start", nil, ComposeVerbRequest{Name: name, Services: services}, nil)
}

// ComposeProjects lists the projects brought up through the daemon.
func (c *Client) ComposeProjects(ctx context.Context) ([]compose.Record, error) {
	var v []compose.Record
	return v, c.getJSON(ctx, "/compose/projects", nil, &v)
}

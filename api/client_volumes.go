package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/flyingdutchman/flyingdutchman/engine"
)

// VolumeCreate makes a volume (a random name if req.Name is "").
func (c *Client) VolumeCreate(ctx context.Context, req VolumeCreateRequest) (*engine.VolumeInfo, error) {
	var v engine.VolumeInfo
	return &v, c.sendJSON(ctx, http.MethodPost, "/volumes", nil, req, &v)
}

// VolumeList lists the volumes.
func (c *Client) VolumeList(ctx context.Context) ([]*engine.VolumeInfo, error) {
	var vs []*engine.VolumeInfo
	return vs, c.getJSON(ctx, "/volumes", nil, &vs)
}

// VolumeInspect returns one volume.
func (c *Client) VolumeInspect(ctx context.Context, name string) (*engine.VolumeInfo, error) {
	var v engine.VolumeInfo
	return &v, c.getJSON(ctx, "/volumes/"+url.PathEscape(name), nil, &v)
}

// VolumeRemove removes a volume.
func (c *Client) VolumeRemove(ctx context.Context, name string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), nil, nil, nil)
}

// VolumePrune removes unused volumes: anonymous ones, or all with all.
func (c *Client) VolumePrune(ctx context.Context, all bool) ([]string, error) {
	q := url.Values{}
	if all {
		q.Set("all", "true")
	}
	var res VolumePruneResult
	return res.Removed, c.sendJSON(ctx, http.MethodPost, "/volumes/prune", q, nil, &res)
}

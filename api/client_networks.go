package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/flyingdutchman/flyingdutchman/engine"
)

// NetworkCreate makes a network.
func (c *Client) NetworkCreate(ctx context.Context, req NetworkCreateRequest) (*engine.NetworkInfo, error) {
	var n engine.NetworkInfo
	return &n, c.sendJSON(ctx, http.MethodPost, "/networks", nil, req, &n)
}

// NetworkList lists the networks.
func (c *Client) NetworkList(ctx context.Context) ([]*engine.NetworkInfo, error) {
	var ns []*engine.NetworkInfo
	return ns, c.getJSON(ctx, "/networks", nil, &ns)
}

// NetworkInspect returns one network.
func (c *Client) NetworkInspect(ctx context.Context, name string) (*engine.NetworkInfo, error) {
	var n engine.NetworkInfo
	return &n, c.getJSON(ctx, "/networks/"+url.PathEscape(name), nil, &n)
}

// NetworkRemove removes a network.
func (c *Client) NetworkRemove(ctx context.Context, name string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
}

// NetworkPrune removes the networks no container names.
func (c *Client) NetworkPrune(ctx context.Context) ([]string, error) {
	var res NetworkPruneResult
	return res.Removed, c.sendJSON(ctx, http.MethodPost, "/networks/prune", nil, nil, &res)
}

// NetworkConnect puts a container on a network.
func (c *Client) NetworkConnect(ctx context.Context, name string, req NetworkConnectRequest) error {
	return c.sendJSON(ctx, http.MethodPost, "/networks/"+url.PathEscape(name)+"/connect", nil, req, nil)
}

// NetworkDisconnect takes a container off a network.
func (c *Client) NetworkDisconnect(ctx context.Context, name, container string) error {
	return c.sendJSON(ctx, http.MethodPost, "/networks/"+url.PathEscape(name)+"/disconnect", nil, NetworkConnectRequest{Container: container}, nil)
}

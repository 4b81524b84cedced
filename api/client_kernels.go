package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

// KernelList lists the vm runtime's kernels.
func (c *Client) KernelList(ctx context.Context) ([]vm.Kernel, error) {
	var ks []vm.Kernel
	return ks, c.getJSON(ctx, "/kernels", nil, &ks)
}

// KernelPull fetches a kernel.
func (c *Client) KernelPull(ctx context.Context, source string) (*vm.Kernel, error) {
	var k vm.Kernel
	return &k, c.sendJSON(ctx, http.MethodPost, "/kernels/pull", nil, KernelPullRequest{Source: source}, &k)
}

// KernelRemove removes a kernel.
func (c *Client) KernelRemove(ctx context.Context, name string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/kernels/"+url.PathEscape(name), nil, nil, nil)
}

// KernelDefault makes a kernel the default.
func (c *Client) KernelDefault(ctx context.Context, name string) error {
	return c.sendJSON(ctx, http.MethodPost, "/kernels/"+url.PathEscape(name)+"/default", nil, nil, nil)
}

// KernelPush makes a kernel artifact from a Debian kernel package and pushes it.
func (c *Client) KernelPush(ctx context.Context, source, ref string) (string, error) {
	var res KernelPushResult
	return res.Digest, c.sendJSON(ctx, http.MethodPost, "/kernels/push", nil, KernelPushRequest{Source: source, Ref: ref}, &res)
}

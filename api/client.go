package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to a daemon's API.
type Client struct {
	http *http.Client
	base string
	host string
}

// NewClient returns a client of the daemon at host, written unix:///path/to/socket (or
// just the path).
func NewClient(host string) (*Client, error) {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok && strings.Contains(host, "://") {
		return nil, fmt.Errorf("unsupported daemon address %q: want unix:///path/to/socket", host)
	}
	if path == "" {
		return nil, fmt.Errorf("empty daemon address")
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{http: &http.Client{Transport: tr}, base: "http://dutchman/" + Version, host: path}, nil
}

// Unreachable reports that no daemon answered on the socket.
type Unreachable struct {
	Socket string
	Err    error
}

func (e *Unreachable) Error() string {
	return fmt.Sprintf("cannot reach the dutchman daemon at unix://%s (is `dutchman daemon` running?): %v", e.Socket, e.Err)
}

func (e *Unreachable) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && ctx.Err() == nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Op == "dial" {
				return nil, &Unreachable{Socket: c.host, Err: oe.Err}
			}
		}
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var e Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &e); err != nil || e.Message == "" {
		e = Error{Message: fmt.Sprintf("daemon answered %s: %s", resp.Status, strings.TrimSpace(string(b))), Code: "internal"}
	}
	e.Status = resp.StatusCode
	return &e
}

func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, query, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func (c *Client) sendJSON(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, query, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// readStream reads a streamed answer, calling fn for each progress line, and returns
// the final line.
func readStream(resp *http.Response, fn func(StreamLine)) (StreamLine, error) {
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line StreamLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return line, fmt.Errorf("bad line from daemon: %w", err)
		}
		switch {
		case line.Error != nil:
			return line, line.Error
		case line.Progress != nil || line.Push != nil || line.Compose != nil || line.Build != nil:
			if fn != nil {
				fn(line)
			}
		default:
			return line, nil
		}
	}
	if err := sc.Err(); err != nil {
		return StreamLine{}, err
	}
	return StreamLine{}, errors.New("the daemon ended the answer without a result (did it stop?)")
}

// stream posts body to path and reads the streamed answer, handing progress lines to
// progress.
func (c *Client) stream(ctx context.Context, path string, body io.Reader, contentType string, progress func(Progress)) (StreamLine, error) {
	resp, err := c.do(ctx, http.MethodPost, path, nil, body, contentType)
	if err != nil {
		return StreamLine{}, err
	}
	return readStream(resp, func(l StreamLine) {
		if progress != nil && l.Progress != nil {
			progress(*l.Progress)
		}
	})
}

// Version asks the daemon for its version.
func (c *Client) Version(ctx context.Context) (*VersionInfo, error) {
	var v VersionInfo
	return &v, c.getJSON(ctx, "/version", nil, &v)
}

// Info asks the daemon what it is and holds.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var v Info
	return &v, c.getJSON(ctx, "/info", nil, &v)
}

// ImageList lists the images.
func (c *Client) ImageList(ctx context.Context) ([]*Image, error) {
	var v []*Image
	return v, c.getJSON(ctx, "/images", nil, &v)
}

// ImageInspect describes one image, with its config.
func (c *Client) ImageInspect(ctx context.Context, ref string) (*Image, error) {
	var v Image
	return &v, c.getJSON(ctx, "/images/inspect", url.Values{"ref": {ref}}, &v)
}

// ImagePull pulls ref (for platform, if not empty), calling progress as it goes.
func (c *Client) ImagePull(ctx context.Context, ref, platform string, progress func(Progress)) (*Image, error) {
	b, _ := json.Marshal(PullRequest{Ref: ref, Platform: platform})
	last, err := c.stream(ctx, "/images/pull", bytes.NewReader(b), "application/json", progress)
	if err != nil {
		return nil, err
	}
	return last.Image, nil
}

// ImageTag names the image source also target.
func (c *Client) ImageTag(ctx context.Context, source, target string) error {
	return c.sendJSON(ctx, http.MethodPost, "/images/tag", nil, TagRequest{Source: source, Target: target}, nil)
}

// ImageRemove removes a name, or an image.
func (c *Client) ImageRemove(ctx context.Context, ref string, force bool) (*Deleted, error) {
	var v Deleted
	q := url.Values{"ref": {ref}}
	if force {
		q.Set("force", "true")
	}
	return &v, c.sendJSON(ctx, http.MethodDelete, "/images", q, nil, &v)
}

// ImagePrune removes images without names that no container uses.
func (c *Client) ImagePrune(ctx context.Context) (*Deleted, error) {
	var v Deleted
	return &v, c.sendJSON(ctx, http.MethodPost, "/images/prune", nil, nil, &v)
}

// ImagePush pushes ref to its registry, or to target if not empty, and returns the
// pushed manifest's digest.
func (c *Client) ImagePush(ctx context.Context, ref, target string, progress func(PushProgress)) (string, error) {
	b, _ := json.Marshal(PushRequest{Ref: ref, Target: target})
	resp, err := c.do(ctx, http.MethodPost, "/images/push", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return "", err
	}
	last, err := readStream(resp, func(l StreamLine) {
		if progress != nil && l.Push != nil {
			progress(*l.Push)
		}
	})
	return last.Digest, err
}

// ImageSave writes an archive of refs to w.
func (c *Client) ImageSave(ctx context.Context, refs []string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/images/save", url.Values{"ref": refs}, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("save: the archive was cut short: %w", err)
	}
	return nil
}

// ImageLoad sends an image archive to the daemon.
func (c *Client) ImageLoad(ctx context.Context, r io.Reader, progress func(Progress)) (*Loaded, error) {
	last, err := c.stream(ctx, "/images/load", r, "application/x-tar", progress)
	if err != nil {
		return nil, err
	}
	return last.Loaded, nil
}

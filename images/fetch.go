package images

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// blobOpener opens a blob for reading from offset on. Pulls fetch layer blobs with one,
// so that a download cut short resumes where it stopped instead of starting over.
type blobOpener func(ctx context.Context, d v1.Hash, offset int64) (io.ReadCloser, error)

// blobClient fetches blobs of one repository over HTTP, authenticated as
// go-containerregistry does, with Range requests to resume.
type blobClient struct {
	client *http.Client
	repo   name.Repository
}

func (s *Store) newBlobClient(ctx context.Context, ref Reference) (*blobClient, error) {
	repo := s.remoteRef(ref).named.Context()
	auth, err := authn.Resolve(ctx, s.opts.keychain, repo)
	if err != nil {
		return nil, errdefs.Unauthorized(fmt.Errorf("credentials for %s: %w", repo, err))
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, s.transport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError(err)
	}
	return &blobClient{client: &http.Client{Transport: tr}, repo: repo}, nil
}

func (c *blobClient) open(ctx context.Context, d v1.Hash, offset int64) (io.ReadCloser, error) {
	u := url.URL{Scheme: c.repo.Scheme(), Host: c.repo.RegistryStr(), Path: "/v2/" + c.repo.RepositoryStr() + "/blobs/" + d.String()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if offset > 0 && resp.StatusCode == http.StatusOK {
		// The server ignored the range: skip what was already read.
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			resp.Body.Close()
			return nil, err
		}
	}
	return resp.Body, nil
}

// resumingReader reads a blob through an opener, reconnecting after transient failures
// and going on from the byte it had reached. It gives up after the store's number of
// retries in a row without progress.
type resumingReader struct {
	ctx      context.Context
	s        *Store
	open     blobOpener
	digest   v1.Hash
	rc       io.ReadCloser
	n        int64
	failures int
	backoff  time.Duration
	// onRetry, if set, is told of each pause before reconnecting.
	onRetry func(err error)
	// onResume, if set, is told when bytes flow again after a pause.
	onResume func()
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		if r.rc == nil {
			rc, err := r.open(r.ctx, r.digest, r.n)
			if err != nil {
				if werr := r.pause(err); werr != nil {
					return 0, werr
				}
				continue
			}
			r.rc = rc
		}
		n, err := r.rc.Read(p)
		if n > 0 {
			r.n += int64(n)
			if r.failures > 0 {
				r.failures, r.backoff = 0, 0
				if r.onResume != nil {
					r.onResume()
				}
			}
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		r.rc.Close()
		r.rc = nil
		if n > 0 {
			return n, nil // the next Read reconnects
		}
		if werr := r.pause(err); werr != nil {
			return 0, werr
		}
	}
}

// pause decides whether to try again after err, and waits before it does.
func (r *resumingReader) pause(err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	if !retryable(err) {
		return registryError(err)
	}
	if r.failures >= r.s.opts.retries {
		return registryError(fmt.Errorf("%w (gave up after %d attempts)", err, r.failures+1))
	}
	r.failures++
	if r.backoff == 0 {
		r.backoff = r.s.opts.backoff
	} else {
		r.backoff *= 2
	}
	r.s.log.Warn("blob download failed; resuming", "blob", r.digest, "at", r.n, "attempt", r.failures, "wait", r.backoff, "err", err)
	if r.onRetry != nil {
		r.onRetry(err)
	}
	select {
	case <-time.After(r.backoff):
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

func (r *resumingReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}

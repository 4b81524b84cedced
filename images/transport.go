package images

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// registryTransport sends registry requests, allowing plain HTTP and unverified TLS only
// to loopback registries and those configured as insecure. go-containerregistry falls
// back to HTTP on its own for private (RFC 1918) addresses too; this refuses that.
type registryTransport struct {
	secure   http.RoundTripper
	insecure http.RoundTripper
	hosts    []string
}

func newRegistryTransport(insecureHosts []string) *registryTransport {
	base := remote.DefaultTransport.(*http.Transport)
	loose := base.Clone()
	loose.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries the operator declared insecure
	return &registryTransport{secure: base.Clone(), insecure: loose, hosts: insecureHosts}
}

// allowsInsecure tells whether host ("name" or "name:port") may be reached without TLS.
func (t *registryTransport) allowsInsecure(host string) bool {
	if slices.Contains(t.hosts, host) {
		return true
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if slices.Contains(t.hosts, h) || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.allowsInsecure(req.URL.Host) {
		if req.URL.Scheme != "https" {
			return nil, fmt.Errorf("%w %s: it is not loopback and not configured as an insecure registry", errPlainHTTP, req.URL.Host)
		}
		return t.secure.RoundTrip(req)
	}
	return t.insecure.RoundTrip(req)
}

// registryError gives an error from talking to a registry its kind: a missing manifest
// or blob is not found, a refused login is unauthorized, the rest is unavailable.
func registryError(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusNotFound:
			return errdefs.NotFound(err)
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return errdefs.Unauthorized(err)
		case terr.StatusCode == http.StatusBadRequest:
			return errdefs.Invalid(err)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode, transport.NameUnknownErrorCode:
				return errdefs.NotFound(err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return errdefs.Unauthorized(err)
			}
		}
	}
	if errors.Is(err, syscall.ENOSPC) {
		return errdefs.NoSpace(err)
	}
	return errdefs.Unavailable(err)
}

// retryable tells whether a failed layer download may succeed if tried again: network
// trouble and server errors may pass; bad content, a full disk, a missing blob or a
// refused login will not.
func retryable(err error) bool {
	var nr noRetry
	if errors.As(err, &nr) {
		return false
	}
	if errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, errdefs.ErrNoSpace) ||
		errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrUnauthorized) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, errMismatch) {
		return false
	}
	// Configuration, not weather: plain HTTP refused, a certificate that does not verify.
	// (go-containerregistry joins the errors of its HTTPS and HTTP attempts as text.)
	var certErr *tls.CertificateVerificationError
	msg := err.Error()
	if errors.Is(err, errPlainHTTP) || errors.As(err, &certErr) ||
		strings.Contains(msg, errPlainHTTP.Error()) || strings.Contains(msg, "x509: ") {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		s := terr.StatusCode
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
	}
	return true
}

// noRetry marks an error that trying again cannot mend, whatever its kind.
type noRetry struct{ error }

func (n noRetry) Unwrap() error { return n.error }

// errPlainHTTP is the refusal to speak plain HTTP to a registry that is not allowed it.
var errPlainHTTP = errors.New("refusing plain HTTP to registry")

// errMismatch marks content that does not match its digest.
var errMismatch = errors.New("content does not match its digest")

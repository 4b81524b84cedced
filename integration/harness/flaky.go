//go:build linux

package harness

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Fault is how Flaky answers a blob download it fails.
type Fault string

// Faults Flaky can inject.
const (
	Fault503   Fault = "503"   // 503 Service Unavailable
	Fault429   Fault = "429"   // 429 Too Many Requests
	FaultReset Fault = "reset" // half the body, then the connection is cut
)

// FlakyProxy sits in front of a real registry and fails the first download of each blob
// with its fault; later ones pass. Failures counts the downloads it failed.
type FlakyProxy struct {
	Addr     string
	Failures atomic.Int64
	// Ranges counts blob downloads that asked for a byte range (resumed downloads).
	Ranges atomic.Int64
}

// Flaky starts a FlakyProxy to the registry at target for test t.
func Flaky(t testing.TB, target string, fault Fault) *FlakyProxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &FlakyProxy{}
	var mu sync.Mutex
	seen := map[string]bool{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			if r.Header.Get("Range") != "" {
				p.Ranges.Add(1)
			}
			mu.Lock()
			first := !seen[r.URL.Path]
			seen[r.URL.Path] = true
			mu.Unlock()
			if first {
				p.Failures.Add(1)
				switch fault {
				case Fault503:
					http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}`, http.StatusServiceUnavailable)
					return
				case Fault429:
					w.Header().Set("Retry-After", "0")
					http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, http.StatusTooManyRequests)
					return
				case FaultReset:
					rp.ServeHTTP(&cutWriter{ResponseWriter: w}, r)
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: handler}
	l := listen(t)
	p.Addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// cutWriter passes on the headers and half of the declared body, then cuts the
// connection, as a reset would.
type cutWriter struct {
	http.ResponseWriter
	limit, n int64
}

func (c *cutWriter) WriteHeader(code int) {
	if cl := c.Header().Get("Content-Length"); cl != "" {
		var n int64
		for _, ch := range cl {
			n = n*10 + int64(ch-'0')
		}
		c.limit = n / 2
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if c.limit > 0 && c.n+int64(len(b)) > c.limit {
		b = b[:c.limit-c.n]
		c.ResponseWriter.Write(b)
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.n += int64(len(b))
	return c.ResponseWriter.Write(b)
}

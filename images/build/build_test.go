package build

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/internal/fsutil"
)

func TestConfig(t *testing.T) {
	m := New(Config{Root: "/var/lib/dutchman/buildkit", Runc: "/usr/sbin/runc", InsecureRegistries: []string{"registry.lan:5000"}})
	defer m.Close()
	got := m.config("/var/lib/dutchman/buildkit/buildkitd.sock")
	for _, want := range []string{
		`root = "/var/lib/dutchman/buildkit/state"`,
		`address = ["unix:///var/lib/dutchman/buildkit/buildkitd.sock"]`,
		"[worker.oci]\n  enabled = true\n  binary = \"/usr/sbin/runc\"\n  networkMode = \"host\"",
		"[worker.containerd]\n  enabled = false",
		"[registry.\"registry.lan:5000\"]\n  http = true\n  insecure = true",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

// TestSocketPath keeps buildkitd's socket within what a unix socket's path holds.
func TestSocketPath(t *testing.T) {
	short := New(Config{Root: "/var/lib/dutchman/buildkit"})
	defer short.Close()
	if got := short.socketPath(); got != "/var/lib/dutchman/buildkit/buildkitd.sock" {
		t.Errorf("socket under a short root: %s", got)
	}
	deep := New(Config{Root: "/" + strings.Repeat("d", 120) + "/buildkit"})
	defer deep.Close()
	if got := deep.socketPath(); len(got) > maxSocketPath || !strings.HasPrefix(got, fsutil.RuntimeDir()+"/buildkitd-") {
		t.Errorf("socket under a deep root: %s (%d bytes)", got, len(got))
	}
}

func TestCanonicalTags(t *testing.T) {
	got, err := canonicalTags([]string{"web", "docker.io/library/web:latest", "127.0.0.1:5000/team/app:v1"})
	if err != nil || strings.Join(got, " ") != "docker.io/library/web:latest 127.0.0.1:5000/team/app:v1" {
		t.Errorf("tags %v, %v", got, err)
	}
	for _, bad := range []string{"Bad Name", "web@sha256:abc", ""} {
		if _, err := canonicalTags([]string{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("tag %q: %v; want invalid", bad, err)
		}
	}
}

// TestFrontend turns options into the Dockerfile frontend's attributes and the local
// directories it reads, and refuses a context or a Dockerfile that is not there.
func TestFrontend(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ci"), 0o755)
	os.WriteFile(filepath.Join(dir, "ci", "app.Dockerfile"), []byte("FROM scratch\n"), 0o644)
	o := Options{Context: dir, Dockerfile: "ci/app.Dockerfile", Target: "prod", Platforms: []string{"linux/amd64", "linux/arm64"},
		Args: map[string]string{"V": "1"}, Labels: map[string]string{"team": "x"}, NoCache: true, Pull: true}
	attrs, locals, closeAll, err := o.frontend()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	want := map[string]string{"filename": "app.Dockerfile", "target": "prod", "platform": "linux/amd64,linux/arm64",
		"build-arg:V": "1", "label:team": "x", "no-cache": "", "image-resolve-mode": "pull"}
	for k, v := range want {
		if got, ok := attrs[k]; !ok || got != v {
			t.Errorf("attribute %s = %q (set %v); want %q", k, got, ok, v)
		}
	}
	if len(attrs) != len(want) || locals["context"] == nil || locals["dockerfile"] == nil {
		t.Errorf("attributes %v, locals %v", attrs, locals)
	}
	for _, c := range []struct {
		o     Options
		words string
	}{
		{Options{}, "no context"},
		{Options{Context: filepath.Join(dir, "nowhere")}, "no such file"},
		{Options{Context: filepath.Join(dir, "ci", "app.Dockerfile")}, "not a directory"},
		{Options{Context: dir}, "Dockerfile"},
		{Options{Context: dir, Dockerfile: "ci"}, "not a regular file"},
		{Options{Context: dir, Dockerfile: "../../etc/passwd"}, "escapes"},
		{Options{Context: dir, Dockerfile: "ci/app.Dockerfile", Platforms: []string{"amd64"}}, "os/arch"},
	} {
		if _, _, _, err := c.o.frontend(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%+v: %v; want an invalid-argument error saying %q", c.o, err, c.words)
		}
	}
}

// TestStepTail quotes the failed step and the end of its output, and only that.
func TestStepTail(t *testing.T) {
	ok, bad := digest.FromString("ok"), digest.FromString("bad")
	tail := newStepTail()
	tail.add(&client.SolveStatus{Vertexes: []*client.Vertex{{Digest: ok, Name: "[1/2] RUN true"}, {Digest: bad, Name: "[2/2] RUN make"}}})
	var logs []*client.VertexLog
	for i := range 30 {
		logs = append(logs, &client.VertexLog{Vertex: bad, Data: []byte("line " + strings.Repeat("x", i%3) + "\n")})
	}
	logs = append(logs, &client.VertexLog{Vertex: ok, Data: []byte("fine\n")}, &client.VertexLog{Vertex: bad, Data: []byte("last words\n")})
	tail.add(&client.SolveStatus{Logs: logs, Vertexes: []*client.Vertex{{Digest: bad, Name: "[2/2] RUN make", Error: "exit code: 2"}}})
	got := tail.failed()
	if !strings.HasPrefix(got, "\n[2/2] RUN make\n") || !strings.HasSuffix(got, "  | last words") || strings.Contains(got, "fine") || strings.Contains(got, "RUN true") {
		t.Errorf("failed steps:\n%s", got)
	}
	if n := strings.Count(got, "  | "); n != tailLines {
		t.Errorf("%d lines of output quoted; want %d", n, tailLines)
	}
}

// TestClassify gives failed builds the kinds the doors map: the Dockerfile's or a
// step's fault is invalid; buildkitd gone, a registry out of reach, no room or no
// credentials are not.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		kind error
	}{
		{errors.New(`process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`), errdefs.ErrInvalidArgument},
		{errors.New("dockerfile parse error on line 3: unknown instruction: FROBNICATE"), errdefs.ErrInvalidArgument},
		{status.Error(codes.Unavailable, "connection closed"), errdefs.ErrUnavailable},
		{errors.New("write /var/lib/x: no space left on device"), errdefs.ErrNoSpace},
		{errors.New("failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"), errdefs.ErrUnauthorized},
		{errors.New("dial tcp 127.0.0.1:5000: connect: connection refused"), errdefs.ErrUnavailable},
	} {
		if got := classify(fmt.Errorf("build: %w", c.err), c.err); !errors.Is(got, c.kind) {
			t.Errorf("%v: %v; want %v", c.err, got, c.kind)
		}
	}
}

// TestOwnSocket dials only a socket of the daemon's user in a directory no one else may
// write to.
func TestOwnSocket(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := ownSocket(sock); err != nil {
		t.Errorf("the daemon's own socket: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	if err := ownSocket(filepath.Join(dir, "file")); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a plain file: %v", err)
	}
	os.Chmod(dir, 0o777)
	if err := ownSocket(sock); err == nil || !strings.Contains(err.Error(), "only its owner writes to") {
		t.Errorf("in a directory anyone writes to: %v", err)
	}
}

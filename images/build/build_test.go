package build

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
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
	if got := deep.socketPath(); len(got) > maxSocketPath || !strings.HasPrefix(got, os.TempDir()) {
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
	attrs, locals, err := o.frontend()
	if err != nil {
		t.Fatal(err)
	}
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
		{Options{Context: dir, Dockerfile: "ci"}, "is a directory"},
		{Options{Context: dir, Dockerfile: "ci/app.Dockerfile", Platforms: []string{"amd64"}}, "os/arch"},
	} {
		if _, _, err := c.o.frontend(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.words) {
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

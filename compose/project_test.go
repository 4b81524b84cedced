package compose

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestGuardedLoadRefusesWhatWouldBlock loads a project on someone else's behalf: a FIFO
// where a compose file, the .env or an env file would be is refused at once instead of
// blocking the reader, and env files are read.
func TestGuardedLoadRefusesWhatWouldBlock(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("name: g\nservices:\n  web:\n    image: busybox\n    env_file: web.env\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "web.env"), []byte("A=1\n"), 0o644)
	p, err := Load(context.Background(), Options{WorkingDir: dir, Guarded: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Services["web"].Environment["A"]; v == nil || *v != "1" {
		t.Errorf("env file not read: %v", p.Services["web"].Environment)
	}
	for _, fifo := range []string{".env", "compose.override.yaml", "web.env"} {
		path := filepath.Join(dir, fifo)
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := Load(context.Background(), Options{WorkingDir: dir, Guarded: true})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "regular file") {
				t.Errorf("a FIFO as %s: %v; want it refused as no regular file", fifo, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a FIFO as %s blocked the load", fifo)
		}
		os.Remove(path)
		if fifo == "web.env" {
			os.WriteFile(path, []byte("A=1\n"), 0o644)
		}
	}
}

func loadProject(t *testing.T, body string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(body), 0o644)
	p, err := Load(context.Background(), Options{WorkingDir: dir, Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckProjectRefusesWhatItWouldIgnore refuses keys FlyingDutchman does not do
// rather than run looser than asked, and ipam and driver options in a user's tree.
func TestCheckProjectRefusesWhatItWouldIgnore(t *testing.T) {
	for _, c := range []struct {
		body, words string
		privileged  bool
	}{
		{"services:\n  a: {image: busybox, read_only: true}\n", "read_only: not supported", true},
		{"services:\n  a: {image: busybox, cap_drop: [ALL]}\n", "cap_drop: not supported", true},
		{"services:\n  a: {image: busybox, deploy: {resources: {limits: {memory: 64m}}}}\n", "deploy.resources", true},
		{"services:\n  a: {build: {context: ., ssh: [default]}}\n", "build.ssh: not supported", true},
		{"services:\n  a: {build: \"https://github.com/x/y.git\"}\n", "only directories", true},
		{"services:\n  a: {image: busybox, pull_policy: build}\n", "has no build: section", true},
		{"services:\n  a: {image: busybox, networks: [n]}\nnetworks:\n  n: {internal: true}\n", "internal networks", true},
		{"services:\n  a: {image: busybox, networks: [n]}\nnetworks:\n  n: {ipam: {config: [{subnet: 8.8.8.0/24}]}}\n", "ipam: a project in the tree", false},
		{"services:\n  a: {image: busybox}\nvolumes:\n  v: {driver_opts: {type: none, o: bind, device: /etc}}\n", "driver_opts: a project in the tree", false},
	} {
		err := checkProject(loadProject(t, c.body), LoadOptions{Privileged: c.privileged})
		if err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%q: %v; want an error saying %q", c.body, err, c.words)
		}
	}
	ok := "services:\n  a:\n    image: busybox\n    deploy: {replicas: 2}\n    expose: [\"80\"]\n    networks: [n]\nnetworks:\n  n: {ipam: {config: [{subnet: 10.99.0.0/24}]}}\nvolumes:\n  v: {driver_opts: {type: tmpfs, device: tmpfs}}\n"
	if err := checkProject(loadProject(t, ok), LoadOptions{Privileged: true}); err != nil {
		t.Errorf("root's project with ipam and driver options: %v", err)
	}
}

// TestReplicasShareTheirHash gives every replica of a service the same configuration
// hash, networks with priorities included.
func TestReplicasShareTheirHash(t *testing.T) {
	p := loadProject(t, "services:\n  a:\n    image: busybox\n    scale: 3\n    networks:\n      b: {priority: 10}\n      c: {priority: 20}\nnetworks: {b: {}, c: {}}\n")
	var hashes []string
	for n := 1; n <= 3; n++ {
		spec, err := serviceSpec(p, p.Services["a"], n, LoadOptions{Privileged: true})
		if err != nil {
			t.Fatal(err)
		}
		if spec.Networks[0].Network != "x_c" {
			t.Errorf("replica %d: networks %+v; want x_c (priority 20) first", n, spec.Networks)
		}
		hashes = append(hashes, spec.Labels[LabelConfigHash])
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Errorf("replicas' hashes differ: %v", hashes)
	}
}

// TestGuardedBindsAreTheTrees reads a relative bind of a project in the tree as a
// directory of the tree, not a host path.
func TestGuardedBindsAreTheTrees(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  a: {image: busybox, volumes: [\"./site:/srv\"]}\n"), 0o644)
	p, err := Load(context.Background(), Options{WorkingDir: dir, Name: "x", Guarded: true})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := serviceSpec(p, p.Services["a"], 1, LoadOptions{InTree: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := spec.Mounts[0]; !m.InTree || m.Source != filepath.Join(dir, "site") || m.CreateHostPath {
		t.Errorf("a relative bind in the tree: %+v", m)
	}
}

// TestGuardedLoadReadsOnlyTheProjectsFiles: include, extends of another file and
// label_file are refused; the override is found as Compose finds it; .env interpolates.
func TestGuardedLoadReadsOnlyTheProjectsFiles(t *testing.T) {
	for _, c := range []struct{ body, words string }{
		{"include: [other.yaml]\nservices:\n  a: {image: busybox}\n", "include:"},
		{"services:\n  a: {image: busybox, extends: {file: other.yaml, service: b}}\n", "extends of another file"},
		{"services:\n  a: {image: busybox, label_file: labels}\n", "label_file"},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(c.body), 0o644)
		os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("services:\n  b: {image: busybox}\n"), 0o644)
		if _, err := Load(context.Background(), Options{WorkingDir: dir, Name: "x", Guarded: true}); err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%q: %v; want an error saying %q", c.body, err, c.words)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  a: {image: \"busybox:${TAG}\"}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "compose.override.yml"), []byte("services:\n  a: {command: [echo, over]}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte("TAG=1.36\n"), 0o644)
	p, err := Load(context.Background(), Options{WorkingDir: dir, Name: "x", Guarded: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Services["a"]; a.Image != "busybox:1.36" || strings.Join(a.Command, " ") != "echo over" {
		t.Errorf("with compose.override.yml and .env: %+v", a)
	}
}

// TestBuildOptions turns a service's build: section into a build: the context and
// Dockerfile as the project's directory places them (inside the tree for a project of
// the tree), the arguments set, and the image named PROJECT-SERVICE when it has none.
func TestBuildOptions(t *testing.T) {
	p := loadProject(t, "services:\n  web:\n    build:\n      context: ./app\n      dockerfile: ci/Dockerfile\n      args: {A: \"1\", UNSET: null}\n      target: prod\n      tags: [\"extra:v1\"]\n      platforms: [linux/arm64]\n")
	o := BuildOptionsOf(p, p.Services["web"], LoadOptions{})
	if o.Context != filepath.Join(p.WorkingDir, "app") || o.Dockerfile != "ci/Dockerfile" || o.InTree || o.Target != "prod" {
		t.Errorf("options: %+v", o)
	}
	if len(o.Args) != 1 || o.Args["A"] != "1" {
		t.Errorf("args: %v", o.Args)
	}
	if want := []string{"x-web", "extra:v1"}; !slices.Equal(o.Tags, want) || !slices.Equal(o.Platforms, []string{"linux/arm64"}) {
		t.Errorf("tags %v (want %v), platforms %v", o.Tags, want, o.Platforms)
	}
	spec, err := serviceSpec(p, p.Services["web"], 1, LoadOptions{Privileged: true})
	if err != nil || spec.Image != "x-web" {
		t.Errorf("spec image %q: %v", spec.Image, err)
	}
	p.WorkingDir = "/compose/x"
	p.Services["web"].Build.Context = "/compose/x/app"
	if o := BuildOptionsOf(p, p.Services["web"], LoadOptions{InTree: true}); o.Context != "/compose/x/app" || !o.InTree {
		t.Errorf("a project of the tree builds from %q (in the tree: %v)", o.Context, o.InTree)
	}
}

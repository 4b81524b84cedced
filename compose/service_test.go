package compose

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

func load(t *testing.T, body string) (engine.Spec, error) {
	t.Helper()
	dir := t.TempDir()
	return LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{})
}

func TestLoadServiceTakesComposeKeys(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "web.env"), []byte("FROM_FILE=yes\n"), 0o644)
	body := `
image: busybox
command: sh -c 'echo "$$GREETING"'
entrypoint: ["/bin/env", "--"]
environment:
  GREETING: hello world
  EMPTY: ""
  UNSET:
env_file: web.env
working_dir: /srv
user: "1000:1000"
restart: on-failure:3
labels: {team: core}
hostname: box
mem_limit: 64m
cpus: 0.5
stop_signal: SIGINT
stop_grace_period: 1m30s
tty: true
stdin_open: true
x-note: extensions are allowed
`
	spec, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	grace := engine.Duration(90 * time.Second)
	want := engine.Spec{
		Image: "busybox", Command: []string{"sh", "-c", `echo "$GREETING"`}, Entrypoint: []string{"/bin/env", "--"},
		Env:        []string{"EMPTY=", "FROM_FILE=yes", "GREETING=hello world"},
		WorkingDir: "/srv", User: "1000:1000", Restart: "on-failure:3", Labels: map[string]string{"team": "core"},
		Hostname: "box", Memory: 64 << 20, CPUs: 0.5, StopSignal: "SIGINT", StopGracePeriod: &grace, Tty: true, OpenStdin: true,
	}
	if g, w := js(spec), js(want); g != w {
		t.Errorf("spec:\n got %s\nwant %s", g, w)
	}
	// What RenderService writes, LoadService reads back the same.
	again, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), RenderService(spec), LoadOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, RenderService(spec))
	}
	if g, w := js(again), js(spec); g != w {
		t.Errorf("round trip:\n got %s\nwant %s\n%s", g, w, RenderService(spec))
	}
}

func durp(d time.Duration) *engine.Duration { v := engine.Duration(d); return &v }

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRenderServiceRoundTrips(t *testing.T) {
	for _, spec := range []engine.Spec{
		{Image: "busybox"},
		{Image: "busybox", Command: []string{}, Entrypoint: []string{}},
		{Image: "127.0.0.1:5000/a/b:v1", Command: []string{"echo", "yes", "1", "true", "a: b", "", "null"}, AutoRemove: true},
		{Image: "busybox", Env: []string{"A=1", "B=x y", "C=null"}, Labels: map[string]string{"on": "true"}, CPUs: 1.25},
		{Image: "busybox", Networks: []network.Request{{Network: "none"}}},
		{Image: "busybox", Healthcheck: &engine.Healthcheck{Test: []string{"CMD-SHELL", "wget -q -O /dev/null http://localhost/"}, Interval: durp(time.Second), StartPeriod: durp(0), Retries: 2}},
		{Image: "busybox", Healthcheck: &engine.Healthcheck{Test: []string{"NONE"}}},
		{Image: "busybox", Healthcheck: &engine.Healthcheck{Disable: true}},
		{Image: "busybox", Networks: []network.Request{{Network: "bridge"}}, PublishAll: true},
		{Image: "busybox", Networks: []network.Request{{Network: "front"}, {Network: "back"}}},
		{Image: "busybox", Networks: []network.Request{{Network: "front", Aliases: []string{"www", "web.local"}}, {Network: "back", IP: "10.9.0.7"}}},
		{Image: "busybox", Ports: []network.Port{
			{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
			{HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
			{HostIP: "127.0.0.1", ContainerPort: 443, Protocol: "tcp"},
			{ContainerPort: 9000, Protocol: "tcp"},
		}},
	} {
		data := RenderService(spec)
		back, err := load(t, string(data))
		if err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if g, w := js(back), js(spec); g != w {
			t.Errorf("round trip of\n%s\n got %s\nwant %s", data, g, w)
		}
	}
}

func TestLoadServiceErrorsNameTheLine(t *testing.T) {
	cases := []struct{ body, words string }{
		{"image: busybox\n  bad: indent\n", "line 2"},
		{"image: busybox\nfoo: bar\n", `line 2: unknown key`},
		{"image: busybox\ncommand: \"true\"\nmem_limit: lots\n", `line 3`},
		{"image: busybox\ncommand: true\n", `line 2: command must be a string or a list`},
		{"image: busybox\n\nrestart: sometimes\n", `line 3: invalid restart policy "sometimes"`},
		{"image: busybox\nexpose: [\"80\"]\n", `line 2: expose: not supported by FlyingDutchman yet`},
		{"image: busybox\nports: [\"8080:80/sctp\"]\n", `line 2: ports:`},
		{"image: busybox\nports: [\"8080-8081:80\"]\n", `line 2: ports: invalid port`},
		{"image: busybox\nports: [\"20000-20999:20000-20999\"]\n", `line 2: 1000 ports published: at most 256`},
		{"image: busybox\n\nports: [\"80:80\"]\n", `line 3: port 80: a spec file in the tree of a user other than root`},
		{"image: busybox\nnetwork_mode: host\n", `line 2: network host: a spec file in the tree of a user other than root`},
		{"image: busybox\nnetwork_mode: \"service:db\"\n", `line 2: network_mode: service:db is not supported`},
		{"image: busybox\nnetworks: [host]\n", `line 2: networks: host is a network mode`},
		{"image: busybox\nnetworks: [\"no/slash\"]\n", `line 2: networks: invalid network name`},
		{"image: busybox\nnetworks: {front: {mac_address: \"02:42:ac:11:00:02\"}}\n", `line 2: networks: front: aliases and ipv4_address`},
		{"image: busybox\nnetworks: {front: {ipv4_address: 10.1.2}}\n", `line 2: invalid IPv4 address`},
		{"image: busybox\nnetwork_mode: none\nports: [\"8080:80\"]\n", `ports cannot be published with network none`},
		{"command: [true]\n", "no image"},
		{"", "empty"},
		{"- image: busybox\n", "line 1: a spec is a mapping"},
		{"image: busybox\nenv_file: nothere.env\n", "line 2"},
		{"image: busybox\nstop_signal: SIGNOPE\n", `line 2: invalid signal "SIGNOPE"`},
		{"image: busybox\ncontainer_name: other\n", "line 2: container_name: the container's name is the file's name"},
		{"image: busybox\nworking_dir: relative\n", "line 2"},
		{"image: busybox\nx-auto-remove: maybe\n", "line 2"},
	}
	for _, c := range cases {
		_, err := load(t, c.body)
		if err == nil || !strings.Contains(err.Error(), c.words) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v; want an invalid-argument error saying %q", c.body, err, c.words)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "web.yaml: ") {
			t.Errorf("%q: %v does not name the file", c.body, err)
		}
	}
}

func TestLoadServiceInterpolates(t *testing.T) {
	spec, err := LoadService(context.Background(), filepath.Join(t.TempDir(), "web.yaml"),
		[]byte("image: ${IMAGE}\ncommand: [echo, '${MISSING:-default}', '$$HOME']\n"), LoadOptions{Env: map[string]string{"IMAGE": "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Image != "busybox" || js(spec.Command) != `["echo","default","$HOME"]` {
		t.Errorf("interpolated: %+v", spec)
	}
}

// TestLoadServiceReadsNoFileItDoesNotTake: keys that name files the loader would read
// (label_file, extends) are refused before it runs, and so are env_file paths with
// variables, which the check of env files could not see through.
func TestLoadServiceReadsNoFileItDoesNotTake(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		"image: busybox\nlabel_file: f\n",
		"image: busybox\nextends: {file: f, service: x}\n",
		"image: busybox\nenv_file: ${X:-f}\n",
		"image: busybox\nenv_file: f\n",
		"image: busybox\nenv_file: [{path: f, required: false}]\n",
	} {
		done := make(chan error, 1)
		go func() {
			_, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{})
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "line 2") {
				t.Errorf("%q: %v; want an invalid-argument error on line 2", body, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: the loader is blocked on a FIFO", body)
		}
	}
}

func TestLoadServiceVolumes(t *testing.T) {
	spec, err := load(t, "image: busybox\nvolumes: [\"db:/var/lib/db\", \"/data\", \"cache:/c:ro\"]\ntmpfs: [/run]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []volumes.Mount{
		{Type: "volume", Source: "db", Target: "/var/lib/db"},
		{Type: "volume", Target: "/data"},
		{Type: "volume", Source: "cache", Target: "/c", ReadOnly: true},
		{Type: "tmpfs", Target: "/run"},
	}
	if !reflect.DeepEqual(spec.Mounts, want) {
		t.Errorf("mounts: %+v\nwant %+v", spec.Mounts, want)
	}
	// Rendered and read back, the same.
	again, err := LoadService(context.Background(), filepath.Join(t.TempDir(), "web.yaml"), RenderService(spec), LoadOptions{})
	if err != nil || !reflect.DeepEqual(again.Mounts, want) {
		t.Errorf("mounts rendered and read back: %+v, %v", again.Mounts, err)
	}
	// A tmpfs's mode is a number, written in octal as in Compose (YAML reads 01777 so).
	spec, err = load(t, "image: busybox\nvolumes: [{type: tmpfs, target: /t, tmpfs: {mode: 01777, size: 1m}}]\ntmpfs: [\"/u:mode=1770\"]\n")
	if err != nil || len(spec.Mounts) != 2 || spec.Mounts[0].TmpfsMode != 0o1777 || spec.Mounts[0].TmpfsSize != 1<<20 || spec.Mounts[1].TmpfsMode != 0o1770 {
		t.Errorf("tmpfs modes: %+v, %v; want 01777 with 1 MiB, and 01770", spec.Mounts, err)
	}
	for _, body := range []string{
		"image: busybox\nvolumes: [\"/etc:/host\"]\n",
		"image: busybox\nvolumes: [\"~/x:/host\"]\n",
		"image: busybox\nvolumes: [{type: bind, source: \"${SRC:-/etc}\", target: /x}]\n",
		"image: busybox\nvolumes: [{type: bind, source: /etc, target: /x}]\n",
		"image: busybox\nvolumes: [{type: \"${T:-bind}\", source: /, target: /host}]\n",
		"image: busybox\nvolumes: [{type: \"${T-bind}\", source: /, target: /host}]\n",
		"image: busybox\nvolumes: [\"bad name:/x\"]\n",
		"image: busybox\nvolumes: [\"db:/proc\"]\n",
	} {
		if _, err := load(t, body); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v; want an invalid-argument error on line 2", body, err)
		}
	}
}

func TestLoadServiceBinds(t *testing.T) {
	ctx := context.Background()
	body := "image: busybox\nvolumes: [\"./site:/srv:ro\", \"../shared:/shared\", {type: bind, source: \"${DATA}\", target: /data}]\n"
	env := map[string]string{"DATA": "data/db"}

	// In the tree: relative sources are the tree's directories, in the tree's terms.
	spec, err := LoadService(ctx, "/containers/web.yaml", []byte(body), LoadOptions{Env: env, InTree: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []volumes.Mount{
		{Type: "bind", Source: "/containers/site", Target: "/srv", ReadOnly: true, InTree: true},
		{Type: "bind", Source: "/shared", Target: "/shared", InTree: true},
		{Type: "bind", Source: "/containers/data/db", Target: "/data", InTree: true},
	}
	if !reflect.DeepEqual(spec.Mounts, want) {
		t.Errorf("binds in the tree: %+v\nwant %+v", spec.Mounts, want)
	}
	again, err := LoadService(ctx, "/containers/web.yaml", RenderService(spec), LoadOptions{InTree: true})
	if err != nil || !reflect.DeepEqual(again.Mounts, want) {
		t.Errorf("binds in the tree rendered and read back: %+v, %v\n%s", again.Mounts, err, RenderService(spec))
	}
	// Host paths only where allowed (a tree owned by root), ~ as the daemon's home.
	for _, src := range []string{"/srv/x", "${DIR}/x", "~/x"} {
		b := "image: busybox\nvolumes: [\"" + src + ":/x\"]\n"
		if _, err := LoadService(ctx, "/containers/web.yaml", []byte(b), LoadOptions{Env: map[string]string{"DIR": "/etc"}, InTree: true}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "user other than root") {
			t.Errorf("%s in the tree of a user: %v; want it refused on line 2", src, err)
		}
	}
	home, _ := os.UserHomeDir()
	spec, err = LoadService(ctx, "/containers/web.yaml", []byte("image: busybox\nvolumes: [\"/srv/x/:/x\", \"~/y:/y\"]\n"), LoadOptions{InTree: true, Privileged: true})
	if err != nil || len(spec.Mounts) != 2 || spec.Mounts[0].Source != "/srv/x" || spec.Mounts[0].InTree || !spec.Mounts[0].CreateHostPath || spec.Mounts[1].Source != filepath.Join(home, "y") {
		t.Errorf("host binds in root's tree: %+v, %v", spec.Mounts, err)
	}
	// Outside the tree, relative sources are host paths beside the file, as in Compose.
	dir := t.TempDir()
	spec, err = LoadService(ctx, filepath.Join(dir, "web.yaml"), []byte("image: busybox\nvolumes: [{type: bind, source: ./src, target: /src, bind: {create_host_path: false}}]\n"), LoadOptions{Privileged: true})
	if err != nil || len(spec.Mounts) != 1 || spec.Mounts[0].Source != filepath.Join(dir, "src") || spec.Mounts[0].CreateHostPath {
		t.Errorf("a relative bind outside the tree: %+v, %v", spec.Mounts, err)
	}
}

// TestLoadServiceEnvFiles reads env files as Compose does (in order, the explicit
// environment winning, required unless said otherwise), and refuses what is not a
// regular file without reading it: a device node the daemon, as root, would read.
func TestLoadServiceEnvFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.env"), []byte("A=1\nB=from-a\nC=${A}-c\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.env"), []byte("B=from-b\n"), 0o644)
	body := "image: busybox\nenvironment: {D: explicit, B: explicit-b}\nenv_file: [a.env, b.env, {path: missing.env, required: false}]\n"
	spec, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Env, " "); got != "A=1 B=explicit-b C=1-c D=explicit" {
		t.Errorf("environment from env files: %q", got)
	}
	if err := syscall.Mknod(filepath.Join(dir, "dev.env"), syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err) // /dev/zero's numbers
	}
	for body, words := range map[string]string{
		"image: busybox\nenv_file: missing.env\n": "missing.env",
		"image: busybox\nenv_file: dev.env\n":     "dev.env is not a regular file",
	} {
		if _, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), words) {
			t.Errorf("%q: %v; want an error saying %q", body, err, words)
		}
	}
}

func TestLoadServiceNetworksAndPorts(t *testing.T) {
	body := `
image: busybox
networks:
  front:
    aliases: [www]
  back:
    ipv4_address: 10.9.0.7
  extra:
ports:
  - "8080:80"
  - 127.0.0.1:5000-5001:5000-5001/udp
  - target: 443
    published: "8443"
    host_ip: 127.0.0.1
  - "9000"
x-publish-all: true
`
	spec, err := load(t, body)
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Spec{
		Image: "busybox",
		Networks: []network.Request{
			{Network: "front", Aliases: []string{"www"}}, {Network: "back", IP: "10.9.0.7"}, {Network: "extra"},
		},
		Ports: []network.Port{
			{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
			{HostIP: "127.0.0.1", HostPort: 5000, ContainerPort: 5000, Protocol: "udp"},
			{HostIP: "127.0.0.1", HostPort: 5001, ContainerPort: 5001, Protocol: "udp"},
			{HostIP: "127.0.0.1", HostPort: 8443, ContainerPort: 443, Protocol: "tcp"},
			{ContainerPort: 9000, Protocol: "tcp"},
		},
		PublishAll: true,
	}
	if g, w := js(spec), js(want); g != w {
		t.Errorf("spec:\n got %s\nwant %s", g, w)
	}
	// Root's spec files may publish low ports and use the host's network.
	dir := t.TempDir()
	for _, body := range []string{"image: busybox\nports: [\"80:80\"]\n", "image: busybox\nnetwork_mode: host\n"} {
		if _, err := LoadService(context.Background(), filepath.Join(dir, "web.yaml"), []byte(body), LoadOptions{Privileged: true}); err != nil {
			t.Errorf("%q, privileged: %v", body, err)
		}
	}
}

// TestSpecBuild reads a spec file's build: section: in the tree, its context is a
// directory of the tree (relative to containers/), the image the container's name when
// it has none; rendered, it reads back the same. What is not built with is refused.
func TestSpecBuild(t *testing.T) {
	ctx := context.Background()
	body := "build:\n  context: ../builds/web\n  dockerfile: ci.Dockerfile\n  args: {V: \"2\"}\n  target: prod\n  tags: [\"web:v2\"]\n"
	spec, err := LoadService(ctx, "/containers/web.yaml", []byte(body), LoadOptions{InTree: true})
	if err != nil {
		t.Fatal(err)
	}
	b := spec.Build
	if spec.Image != "web" || b == nil || b.Context != "/builds/web" || !b.InTree || !b.Unprivileged || b.Dockerfile != "ci.Dockerfile" || b.Target != "prod" || b.Args["V"] != "2" || strings.Join(b.Tags, " ") != "web web:v2" {
		t.Fatalf("spec %q, build %+v", spec.Image, b)
	}
	again, err := LoadService(ctx, "/containers/web.yaml", RenderService(spec), LoadOptions{InTree: true})
	if err != nil || !reflect.DeepEqual(again, spec) {
		t.Errorf("rendered and read back: %+v, %v\n%s", again.Build, err, RenderService(spec))
	}
	if _, err := LoadService(ctx, "/containers/web.yaml", []byte("build:\n  context: .\n  ssh: [default]\n"), LoadOptions{InTree: true}); err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "build.ssh") {
		t.Errorf("build.ssh: %v", err)
	}
	if _, err := LoadService(ctx, "/containers/web.yaml", []byte("command: [\"true\"]\n"), LoadOptions{InTree: true}); err == nil || !strings.Contains(err.Error(), "no image") {
		t.Errorf("neither image nor build: %v", err)
	}
}

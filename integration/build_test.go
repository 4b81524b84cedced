//go:build linux

package integration

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// writeFiles writes files (path: content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBuild builds from Dockerfiles with the CLI: a single-stage build with an argument,
// a label, a .dockerignore and a COPY; a cached rebuild; a multi-stage build and its
// --target; a push; and the errors of a broken Dockerfile and of a failing RUN.
func TestBuild(t *testing.T) {
	reg, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	if out := d.MustRun("info"); !strings.Contains(out, "buildkitd (started by the first build)") {
		t.Errorf("info before a build:\n%s", out)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM " + ims.Busybox + "\n" +
			"ARG GREETING=hello\n" +
			"RUN echo \"$GREETING from RUN\" > /greeting\n" +
			"COPY . /ctx/\n" +
			"CMD [\"cat\", \"/greeting\", \"/ctx/file.txt\"]\n",
		"file.txt":      "from the context\n",
		"secret.txt":    "left out\n",
		".dockerignore": "secret.txt\n",
	})
	r := d.Run("build", "-t", "built:v1", "-t", "built:also", "--build-arg", "GREETING=hi", "--label", "team=dutch", "--progress", "plain", dir)
	if r.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"Tagged docker.io/library/built:v1\n", "Tagged docker.io/library/built:also\n", "Built sha256:"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, r.Stdout)
		}
	}
	// BuildKit's plain progress: the steps as they ran.
	if !regexp.MustCompile(`#\d+ \[2/3\] RUN echo "hi from RUN" > /greeting\n#\d+ DONE`).MatchString(r.Stderr) {
		t.Errorf("build progress lacks the RUN step:\n%s", r.Stderr)
	}
	if out := d.MustRun("info"); !regexp.MustCompile(`Builder: \S+/buildkitd \(running, pid \d+\)`).MatchString(out) {
		t.Errorf("info after a build:\n%s", out)
	}
	if out := d.MustRun("run", "--rm", "built:v1"); out != "hi from RUN\nfrom the context\n" {
		t.Errorf("run of the built image printed %q", out)
	}
	if out := d.MustRun("run", "--rm", "built:also", "ls", "/ctx"); strings.Contains(out, "secret.txt") || !strings.Contains(out, "Dockerfile") {
		t.Errorf(".dockerignore did not leave secret.txt out of the context: %q", out)
	}
	im := inspect(t, d, "built:v1")
	if im.ID != inspect(t, d, "built:also").ID {
		t.Errorf("the two tags name different images")
	}
	if im.Labels["team"] != "dutch" {
		t.Errorf("labels: %v", im.Labels)
	}

	// The same build again does no work: every step comes from the cache.
	r = d.Run("build", "-t", "built:v1", "--build-arg", "GREETING=hi", "--label", "team=dutch", "--progress", "plain", dir)
	if r.Code != 0 {
		t.Fatalf("rebuild: exit %d\n%s", r.Code, r.Stderr)
	}
	if !regexp.MustCompile(`#\d+ \[2/3\] RUN .*\n#\d+ CACHED`).MatchString(r.Stderr) {
		t.Errorf("the rebuild ran the RUN step again:\n%s", r.Stderr)
	}
	if again := inspect(t, d, "built:v1"); again.ID != im.ID {
		t.Errorf("the cached rebuild made another image: %s, was %s", again.ID, im.ID)
	}
	// --no-cache runs it again.
	r = d.Run("build", "-t", "built:v1", "--build-arg", "GREETING=hi", "--no-cache", "--progress", "plain", dir)
	if r.Code != 0 || regexp.MustCompile(`RUN .*\n#\d+ CACHED`).MatchString(r.Stderr) {
		t.Errorf("--no-cache: exit %d, or a step came from the cache:\n%s", r.Code, r.Stderr)
	}

	// Multi-stage, and its first stage alone with --target; -f names the Dockerfile.
	writeFiles(t, dir, map[string]string{"build/multi.Dockerfile": "FROM " + ims.Busybox + " AS builder\n" +
		"RUN echo compiled > /artifact\n" +
		"FROM " + ims.Busybox + "\n" +
		"COPY --from=builder /artifact /app/artifact\n" +
		"CMD [\"cat\", \"/app/artifact\"]\n"})
	d.MustRun("build", "-q", "-t", "multi:v1", "-f", filepath.Join(dir, "build/multi.Dockerfile"), dir)
	if out := d.MustRun("run", "--rm", "multi:v1"); out != "compiled\n" {
		t.Errorf("multi-stage image printed %q", out)
	}
	d.MustRun("build", "-q", "-t", "multi:builder", "--target", "builder", "-f", filepath.Join(dir, "build/multi.Dockerfile"), dir)
	if out := d.MustRun("run", "--rm", "multi:builder", "cat", "/artifact"); out != "compiled\n" {
		t.Errorf("--target builder image: %q", out)
	}

	// --secret: a RUN step reads the file; the image does not hold it.
	writeFiles(t, dir, map[string]string{"secret.Dockerfile": "FROM " + ims.Busybox + "\nRUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = s3cret && echo seen > /secret-seen\n"})
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("s3cret"), 0o600)
	d.MustRun("build", "-q", "-t", "secret:v1", "-f", filepath.Join(dir, "secret.Dockerfile"), "--secret", "id=tok,src="+tok, dir)
	if out := d.MustRun("run", "--rm", "secret:v1", "sh", "-c", "cat /secret-seen; test -e /run/secrets/tok || echo absent"); out != "seen\nabsent\n" {
		t.Errorf("the image built with a secret: %q", out)
	}

	// -f -: the Dockerfile from stdin.
	r = d.RunStdin([]byte("FROM "+ims.Busybox+"\nCMD [\"echo\", \"from stdin\"]\n"), "build", "-q", "-t", "stdin:v1", "-f", "-", dir)
	if r.Code != 0 {
		t.Errorf("build -f -: exit %d: %s", r.Code, r.Stderr)
	} else if out := d.MustRun("run", "--rm", "stdin:v1"); out != "from stdin\n" {
		t.Errorf("the image built from stdin's Dockerfile printed %q", out)
	}

	// --push: the registry has the image after the build.
	target := reg.Ref("test/built:pushed")
	out := d.MustRun("build", "-t", target, "--push", "--progress", "quiet", dir)
	if !strings.Contains(out, "Pushed sha256:") {
		t.Errorf("build --push output: %q", out)
	}
	ref, err := name.ParseReference(target, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("the registry lacks the pushed image: %v", err)
	}
	if !strings.Contains(out, "Pushed "+desc.Digest.String()) {
		t.Errorf("pushed %s, the build said %q", desc.Digest, out)
	}

	// A broken Dockerfile: the frontend's error, with its line.
	writeFiles(t, dir, map[string]string{"broken.Dockerfile": "FROM " + ims.Busybox + "\nRUN true\nFROBNICATE everything\n"})
	r = d.Run("build", "-f", filepath.Join(dir, "broken.Dockerfile"), "--progress", "quiet", dir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "line 3") || !strings.Contains(strings.ToLower(r.Stderr), "unknown instruction: frobnicate") {
		t.Errorf("broken Dockerfile: exit %d\n%s", r.Code, r.Stderr)
	}
	// A failing RUN: its exit code and its output.
	writeFiles(t, dir, map[string]string{"fail.Dockerfile": "FROM " + ims.Busybox + "\nRUN echo about to fail; echo on stderr >&2; exit 3\n"})
	r = d.Run("build", "-f", filepath.Join(dir, "fail.Dockerfile"), "--progress", "quiet", dir)
	for _, want := range []string{"exit code: 3", "about to fail", "on stderr"} {
		if r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("failing RUN: exit %d, stderr lacks %q:\n%s", r.Code, want, r.Stderr)
		}
	}
	// A missing context, and a tag that is no name.
	if r = d.Run("build", filepath.Join(dir, "nowhere")); r.Code == 0 || !strings.Contains(r.Stderr, "nowhere") {
		t.Errorf("missing context: exit %d: %s", r.Code, r.Stderr)
	}
	if r = d.Run("build", "-t", "Bad Name", dir); r.Code == 0 {
		t.Errorf("a bad tag was accepted: %s", r.Stdout)
	}

	// A daemon without buildkitd says where it looked.
	nobk := harness.StartDaemon(t, harness.WithArgs("--buildkitd", "/nonexistent/buildkitd"))
	if r = nobk.Run("build", dir); r.Code == 0 || !strings.Contains(r.Stderr, "/nonexistent/buildkitd: no such file or directory") {
		t.Errorf("a build without buildkitd: exit %d: %s", r.Code, r.Stderr)
	}
}

// TestBuildMultiPlatform builds for linux/amd64 and linux/arm64 from a two-platform
// busybox (Debian's arm64 busybox-static as the foreign one): the arm64 RUN step runs
// under qemu-user-static, which the daemon registers with binfmt_misc (a registration
// the host keeps, as the emulators' own package would make it). The push carries both
// platforms; the store keeps the host's image, which runs.
func TestBuildMultiPlatform(t *testing.T) {
	reg := harness.StartRegistry(t)
	base := reg.Ref("base/busybox:multi")
	harness.PushBusyboxIndex(t, base)
	d := harness.StartDaemon(t)

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n"})
	target := reg.Ref("test/multi:v1")
	r := d.Run("build", "--platform", "linux/amd64,linux/arm64", "-t", target, "--push", "--progress", "plain", dir)
	if r.Code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	ref, err := name.ParseReference(target, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("the registry has no index at %s: %v", target, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	arches := map[string]string{}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			continue
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		arches[m.Platform.Architecture] = fileInImage(t, img, "arch")
	}
	if arches["amd64"] != "x86_64\n" || arches["arm64"] != "aarch64\n" {
		t.Errorf("uname -m in the pushed images: %q (want x86_64 for amd64, aarch64 for arm64)", arches)
	}
	if out := d.MustRun("run", "--rm", target); out != "x86_64\n" {
		t.Errorf("the stored image is not the host's: it printed %q", out)
	}

	// The store keeps both platforms under the name: inspect lists them, images shows
	// the name once (and the arm64 image with -a), and a push of the name (here to
	// another one) pushes both again.
	var ins []struct {
		Platforms []string `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(d.MustRun("image", "inspect", target)), &ins); err != nil || len(ins) != 1 || strings.Join(ins[0].Platforms, " ") != "linux/amd64 linux/arm64/v8" && strings.Join(ins[0].Platforms, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("the stored platforms: %+v, %v", ins, err)
	}
	if n, all := len(strings.Split(strings.TrimSpace(d.MustRun("images", "-q")), "\n")), len(strings.Split(strings.TrimSpace(d.MustRun("images", "-a", "-q")), "\n")); n != 1 || all != 2 {
		t.Errorf("images lists %d images, images -a %d; want 1 and 2", n, all)
	}
	again := reg.Ref("test/multi:again")
	d.MustRun("push", target, again)
	againRef, err := name.ParseReference(again, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx2, err := remote.Index(againRef)
	if err != nil {
		t.Fatalf("the pushed name is no index: %v", err)
	}
	im2, _ := idx2.IndexManifest()
	pushed := map[string]string{}
	for _, m := range im2.Manifests {
		img, err := idx2.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		pushed[m.Platform.Architecture] = fileInImage(t, img, "arch")
	}
	if pushed["amd64"] != "x86_64\n" || pushed["arm64"] != "aarch64\n" {
		t.Errorf("the store's push of both platforms: %q", pushed)
	}
	// rmi of the name removes both images.
	d.MustRun("rmi", target)
	if out := d.MustRun("images", "-a", "-q"); out != "" {
		t.Errorf("images left after rmi of the multi-platform name: %q", out)
	}

	// A platform no emulator runs is refused before anything is built.
	r = d.Run("build", "--platform", "linux/sparc64", dir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "sparc64") {
		t.Errorf("--platform linux/sparc64: exit %d: %s", r.Code, r.Stderr)
	}
}

// fileInImage reads a file of img's flattened filesystem.
func fileInImage(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not found in the image: %v", path, err)
		}
		if strings.TrimPrefix(hdr.Name, "/") == path {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// TestComposeBuild brings up a project whose services are built: up builds what is
// missing (an image named PROJECT-SERVICE, and one named by image: with pull_policy:
// build), a second up builds nothing, and up --build rebuilds and recreates the
// container whose image changed. A project of the tree builds from its own directory
// (echo up > ctl), and echo build > ctl builds again.
func TestComposeBuild(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d, _ := treeDaemon(t)

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"compose.yaml": "name: bproj\nservices:\n" +
			"  app:\n    build:\n      context: ./app\n      args: {MSG: built-by-compose}\n    command: [\"sh\", \"-c\", \"cat /msg; exec sleep 600\"]\n    stop_signal: SIGKILL\n" +
			"  tool:\n    image: tool:v1\n    build: {context: ./app, dockerfile: tool.Dockerfile}\n    command: [\"sleep\", \"600\"]\n    stop_signal: SIGKILL\n",
		"app/Dockerfile":      "FROM " + ims.Busybox + "\nARG MSG=default\nCOPY version /version\nRUN echo \"$MSG $(cat /version)\" > /msg\n",
		"app/tool.Dockerfile": "FROM " + ims.Busybox + "\nRUN echo tool > /tool\n",
		"app/version":         "v1",
	})
	file := filepath.Join(dir, "compose.yaml")
	r := d.Run("compose", "-f", file, "up", "-d")
	if r.Code != 0 {
		t.Fatalf("compose up: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "RUN echo \"built-by-compose $(cat /version)\"") {
		t.Errorf("compose up did not show the build's progress:\n%s", r.Stderr)
	}
	eventually(t, 20*time.Second, func() string {
		if out := d.MustRun("logs", "bproj-app-1"); out != "built-by-compose v1\n" {
			return fmt.Sprintf("app printed %q", out)
		}
		return ""
	})
	inspect(t, d, "bproj-app")
	if out := d.MustRun("exec", "bproj-tool-1", "cat", "/tool"); out != "tool\n" {
		t.Errorf("tool:v1 has /tool %q", out)
	}
	ids := composeIDs(t, d, file)

	// Nothing to build: the images are here.
	r = d.Run("compose", "-f", file, "up", "-d")
	if r.Code != 0 || strings.Contains(r.Stderr, "RUN echo") {
		t.Errorf("a second up built again (exit %d):\n%s", r.Code, r.Stderr)
	}
	if again := composeIDs(t, d, file); !maps.Equal(again, ids) {
		t.Errorf("a second up changed the containers: %v, were %v", again, ids)
	}

	// --build with a changed context: app's image changes, and its container is remade.
	writeFiles(t, dir, map[string]string{"app/version": "v2"})
	d.MustRun("compose", "-f", file, "up", "-d", "--build")
	eventually(t, 20*time.Second, func() string {
		if out := d.MustRun("logs", "bproj-app-1"); out != "built-by-compose v2\n" {
			return fmt.Sprintf("app printed %q after up --build", out)
		}
		return ""
	})
	after := composeIDs(t, d, file)
	if after["bproj-app-1"] == ids["bproj-app-1"] {
		t.Errorf("up --build kept app's container: %v", after)
	}
	d.MustRun("compose", "-f", file, "down")

	// In the tree: the project's build context is its own directory.
	mustOwnerSh(t, d, "mkdir compose/tp")
	mustSh(t, d, "mkdir compose/tp/app && printf 'FROM "+ims.Busybox+"\\nCOPY hello /hello\\nCMD [\"sh\", \"-c\", \"cat /hello; exec sleep 600\"]\\n' > compose/tp/app/Dockerfile && echo from-the-tree > compose/tp/app/hello")
	if r := sh(t, d, "printf 'services:\\n  web:\\n    build: ./app\\n    stop_signal: SIGKILL\\n' > compose/tp/compose.yaml && echo up > compose/tp/ctl"); r.Code != 0 {
		t.Fatalf("echo up > compose/tp/ctl: %s; compose/tp/error: %s", r.Stderr, mustSh(t, d, "cat compose/tp/error"))
	}
	eventually(t, 20*time.Second, func() string {
		if out := d.MustRun("logs", "tp-web-1"); out != "from-the-tree\n" {
			return fmt.Sprintf("the tree's project printed %q", out)
		}
		return ""
	})
	id := inspect(t, d, "tp-web").ID
	mustSh(t, d, "echo again > compose/tp/app/hello && echo build > compose/tp/ctl")
	if again := inspect(t, d, "tp-web"); again.ID == id {
		t.Errorf("echo build > ctl did not build the changed context")
	}
	// A context outside the tree is not reached: /etc is the tree's /etc.
	mustSh(t, d, "printf 'services:\\n  web:\\n    build: /etc\\n    stop_signal: SIGKILL\\n' > compose/tp/compose.yaml")
	failSh(t, d, "echo build > compose/tp/ctl", "Invalid argument")
	if got := mustSh(t, d, "cat compose/tp/error"); !strings.Contains(got, "not in the tree") {
		t.Errorf("compose/tp/error: %q", got)
	}
	mustSh(t, d, "echo down > compose/tp/ctl")
}

// TestTreeBuild builds from builds/NAME/ of the tree, as its owner (an ordinary user)
// would with a shell: the directory is the context; echo build > ctl builds NAME:latest
// and returns when it is done; log, state and error tell how it went; push pushes the
// last build's tags; a source link builds a project elsewhere, if it is the owner's.
func TestTreeBuild(t *testing.T) {
	_, ims := harness.SharedImages(t)
	reg := harness.StartRegistry(t)
	d, _ := treeDaemon(t)

	mustOwnerSh(t, d, "mkdir builds/web")
	if r := ownerSh(t, d, "mkdir builds/Web"); r.Code == 0 || !strings.Contains(r.Stderr, "Invalid argument") {
		t.Errorf("mkdir builds/Web: exit %d %s", r.Code, r.Stderr)
	}
	if got := mustOwnerSh(t, d, "cat builds/error"); !strings.Contains(got, "invalid build directory name") {
		t.Errorf("builds/error: %q", got)
	}
	// (A # syntax= line is ignored in an ordinary user's tree: the Dockerfile frontend
	// would otherwise fetch that frontend from Docker Hub, out of reach here.)
	mustOwnerSh(t, d, "printf '# syntax=docker/dockerfile:1\\nFROM "+ims.Busybox+"\\nCOPY page.html /www/index.html\\nRUN echo built in the tree && tail -n +3 /proc/net/dev | wc -l > /netdevs\\nCMD [\"cat\", \"/www/index.html\"]\\n' > builds/web/Dockerfile && echo '<h1>tree</h1>' > builds/web/page.html")
	if got := mustOwnerSh(t, d, "cat builds/web/state; cat builds/web/ctl; ls builds/web"); got != "idle\nbuild [--no-cache] [TAG]...\npush\ncancel\nDockerfile\nctl\nerror\nlog\npage.html\nstate\n" {
		t.Errorf("a new build directory:\n%s", got)
	}
	mustOwnerSh(t, d, "echo build > builds/web/ctl")
	if got := mustOwnerSh(t, d, "cat builds/web/state; cat builds/web/error"); got != "built\n" {
		t.Errorf("after build: %q", got)
	}
	logText := mustOwnerSh(t, d, "cat builds/web/log")
	for _, want := range []string{"RUN echo built in the tree", "built in the tree\n", "Tagged docker.io/library/web:latest\n", "Built sha256:"} {
		if !strings.Contains(logText, want) {
			t.Errorf("builds/web/log lacks %q:\n%s", want, logText)
		}
	}
	if got := mustOwnerSh(t, d, "cat images/web/latest/ref"); got != "docker.io/library/web:latest\n" {
		t.Errorf("images/web/latest/ref: %q", got)
	}
	if out := d.MustRun("run", "--rm", "web"); out != "<h1>tree</h1>\n" {
		t.Errorf("run web: %q", out)
	}
	// On an ordinary user's behalf, RUN steps had no network: loopback alone.
	if out := d.MustRun("run", "--rm", "web", "cat", "/netdevs"); out != "1\n" {
		t.Errorf("network interfaces of the tree build's RUN step: %q; want 1 (lo)", out)
	}

	// Tags for a registry, then push: the registry has the image.
	target := reg.Ref("team/web:v1")
	mustOwnerSh(t, d, "echo build "+target+" > builds/web/ctl && echo push > builds/web/ctl")
	if got := mustOwnerSh(t, d, "tail -n 1 builds/web/log"); !strings.HasPrefix(got, "Pushed "+target+" sha256:") {
		t.Errorf("the log's last line after push: %q", got)
	}
	ref, err := name.ParseReference(target, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref); err != nil {
		t.Errorf("the registry lacks %s after push: %v", target, err)
	}

	// A spec file with a build: section builds its image (named as the container) when
	// the store lacks it.
	mustOwnerSh(t, d, "printf 'build: ../builds/web\\n' > containers/webapp.yaml")
	shUntil(t, d, "cat containers/webapp/state", "created\n")
	if got := mustOwnerSh(t, d, "echo start > containers/webapp/ctl; cat images/webapp/latest/ref; grep -A1 '^build:' containers/webapp/spec.yaml"); got != "docker.io/library/webapp:latest\nbuild:\n  context: /builds/web\n" {
		t.Errorf("the spec's image and build:\n%s", got)
	}
	shUntil(t, d, "cat containers/webapp/logs", "<h1>tree</h1>\n")
	mustOwnerSh(t, d, "rm containers/webapp.yaml")

	// cancel stops a build under way. The kernel holds a file for the whole of a write to
	// it, so the writer of build is interrupted first (here by SIGTERM, at a prompt by
	// Ctrl-C), which stops its waiting, not the build; then cancel stops the build.
	mustOwnerSh(t, d, "mkdir builds/slow && printf 'FROM "+ims.Busybox+"\\nRUN sleep 120\\n' > builds/slow/Dockerfile")
	r := ownerSh(t, d, "E=$(mktemp); (exec 2>$E; echo build > builds/slow/ctl) >/dev/null & W=$!; for i in $(seq 100); do grep -q 'RUN sleep 120' builds/slow/log && break; sleep 0.1; done; kill -TERM $W; wait $W; cat builds/slow/state; echo cancel > builds/slow/ctl; for i in $(seq 100); do [ \"$(cat builds/slow/state)\" = failed ] && break; sleep 0.1; done; cat builds/slow/state builds/slow/error; rm $E")
	if r.Code != 0 || r.Stdout != "building\nfailed\nbuilds/slow: operation canceled\n" {
		t.Errorf("a cancelled build: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := ownerSh(t, d, "echo cancel > builds/slow/ctl"); r.Code == 0 || !strings.Contains(r.Stderr, "Device or resource busy") {
		t.Errorf("cancel with no build under way: exit %d %s", r.Code, r.Stderr)
	}

	// A broken Dockerfile: EINVAL, state failed, error and log with its line.
	mustOwnerSh(t, d, "printf 'FROM "+ims.Busybox+"\\nBREAK here\\n' > builds/web/Dockerfile")
	if r := ownerSh(t, d, "echo build > builds/web/ctl"); r.Code == 0 || !strings.Contains(r.Stderr, "Invalid argument") {
		t.Errorf("a broken build: exit %d %s", r.Code, r.Stderr)
	}
	if got := mustOwnerSh(t, d, "cat builds/web/state builds/web/error"); !strings.HasPrefix(got, "failed\n") || !strings.Contains(got, "line 2") {
		t.Errorf("after a broken build: %q", got)
	}
	if got := mustOwnerSh(t, d, "cat builds/web/log"); !strings.Contains(got, "ERROR: ") {
		t.Errorf("the log of a broken build:\n%s", got)
	}
	if r := ownerSh(t, d, "echo frobnicate > builds/web/ctl"); r.Code == 0 || !strings.Contains(r.Stderr, "Invalid argument") {
		t.Errorf("an unknown verb: exit %d", r.Code)
	}

	// A source link to a project of the owner's elsewhere builds it; one to root's does
	// not.
	proj := filepath.Join(d.Dir, "proj")
	writeFiles(t, proj, map[string]string{"Dockerfile": "FROM " + ims.Busybox + "\nCMD [\"echo\", \"from the linked project\"]\n"})
	if err := os.Chown(proj, treeOwner, treeOwner); err != nil {
		t.Fatal(err)
	}
	mustOwnerSh(t, d, "mkdir builds/linked && ln -s "+proj+" builds/linked/source && echo build > builds/linked/ctl")
	if out := d.MustRun("run", "--rm", "linked"); out != "from the linked project\n" {
		t.Errorf("run linked: %q", out)
	}
	rootProj := filepath.Join(d.Dir, "rootproj")
	writeFiles(t, rootProj, map[string]string{"Dockerfile": "FROM " + ims.Busybox + "\n"})
	if err := os.Chmod(rootProj, 0o755); err != nil {
		t.Fatal(err)
	}
	mustOwnerSh(t, d, "mkdir builds/theirs && ln -s "+rootProj+" builds/theirs/source")
	if r := ownerSh(t, d, "echo build > builds/theirs/ctl"); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("a build from root's directory: exit %d %s", r.Code, r.Stderr)
	}
	if got := mustOwnerSh(t, d, "cat builds/theirs/error"); !strings.Contains(got, "belongs to uid 0") {
		t.Errorf("builds/theirs/error: %q", got)
	}

	// rmdir: refused while it holds files, then it forgets the build.
	if r := ownerSh(t, d, "rmdir builds/web"); r.Code == 0 || !strings.Contains(r.Stderr, "not empty") {
		t.Errorf("rmdir of a full build directory: exit %d %s", r.Code, r.Stderr)
	}
	if got := mustOwnerSh(t, d, "rm builds/web/Dockerfile builds/web/page.html && rmdir builds/web && mkdir builds/web && cat builds/web/state builds/web/log"); got != "idle\n" {
		t.Errorf("a build directory made again under the same name: %q", got)
	}
}

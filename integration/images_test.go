//go:build linux

package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/bcrypt"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

type image struct {
	ID          string            `json:"id"`
	Digest      string            `json:"digest"`
	Names       []string          `json:"names"`
	RepoDigests []string          `json:"repoDigests"`
	Platform    string            `json:"platform"`
	Size        int64             `json:"size"`
	Labels      map[string]string `json:"labels"`
	Layers      []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
	Config struct {
		Config struct {
			Cmd []string `json:"Cmd"`
		} `json:"config"`
	} `json:"config"`
}

func inspect(t *testing.T, d *harness.Daemon, ref string) image {
	t.Helper()
	var out []image
	if err := json.Unmarshal([]byte(d.MustRun("image", "inspect", ref)), &out); err != nil || len(out) != 1 {
		t.Fatalf("image inspect %s: %v %v", ref, out, err)
	}
	return out[0]
}

func files(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestPullListInspectRemove(t *testing.T) {
	reg, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)

	out := d.MustRun("pull", ims.Layered)
	// Not a terminal: one line per status change of each layer, then the result.
	for _, want := range []string{": downloading\n", ": done\n", "Digest: " + ims.LayeredDigest.String(), ims.Layered + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\033[") {
		t.Errorf("pull drew progress bars on a pipe:\n%q", out)
	}

	out = d.MustRun("images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$`).MatchString(lines[0]) {
		t.Fatalf("images:\n%s", out)
	}
	f := strings.Fields(lines[1])
	im := inspect(t, d, ims.Layered)
	if f[0] != reg.Addr+"/test/layered" || f[1] != "v1" || f[2] != im.ID[7:19] {
		t.Errorf("images row %q; want repository, tag v1 and ID %s", lines[1], im.ID[7:19])
	}
	if im.Digest != ims.LayeredDigest.String() || len(im.Layers) != 3 || im.Config.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("inspect: %+v", im)
	}
	if q := strings.TrimSpace(d.MustRun("images", "-q")); q != im.ID[7:19] {
		t.Errorf("images -q = %q", q)
	}
	if out := d.MustRun("images", "--digests"); !strings.Contains(out, ims.LayeredDigest.String()) {
		t.Errorf("images --digests lacks the digest:\n%s", out)
	}

	out = d.MustRun("rmi", ims.Layered)
	if !strings.Contains(out, "Untagged: "+ims.Layered) || !strings.Contains(out, "Deleted: "+im.ID) {
		t.Errorf("rmi:\n%s", out)
	}
	if out := d.MustRun("images", "-q"); out != "" {
		t.Errorf("images after rmi: %q", out)
	}
	for _, dir := range []string{"images/blobs/sha256", "images/snapshots"} {
		if n := files(t, filepath.Join(d.DataRoot, dir)); n != 0 {
			t.Errorf("%d entries left in %s after removing the only image", n, dir)
		}
	}
}

func TestPullShowsBarsOnATerminal(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	// script(1) gives the CLI a pseudo-terminal as its standard output.
	// It has no size until stty gives it one, as a terminal window would.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qefc", "stty cols 100 rows 40; "+harness.Binary(t)+" pull "+ims.Busybox, "/dev/null")
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host(), "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pull on a terminal: %v\n%s", err, out)
	}
	layer := ims.BusyboxLayer.Hex[:12]
	if !regexp.MustCompile(layer + ` done +\[=+\] 1\.1 MiB / 1\.1 MiB`).Match(out) {
		t.Errorf("no progress bar for layer %s on a terminal:\n%q", layer, out)
	}
}

func TestPullErrorsThroughTheCLI(t *testing.T) {
	reg, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	cases := []struct {
		args  []string
		words string
	}{
		{[]string{"pull", "NOT/valid"}, `invalid reference "NOT/valid"`},
		{[]string{"pull", reg.Ref("test/busybox:nope")}, "manifest unknown"},
		{[]string{"pull", "--platform", "linux/s390x", ims.Multi}, "no image for platform linux/s390x"},
		{[]string{"pull", "--platform", "linux", ims.Multi}, "invalid platform"},
		{[]string{"rmi", "nothere:v1"}, "no such image: nothere:v1"},
		{[]string{"image", "inspect", "nothere"}, "no such image"},
		{[]string{"tag", "nothere", "x:y"}, "no such image"},
		{[]string{"pull"}, "accepts 1 arg"},
	}
	for _, c := range cases {
		r := d.Run(c.args...)
		if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(c.words)) {
			t.Errorf("dutchman %s: exit %d, stderr %q; want a failure saying %q", strings.Join(c.args, " "), r.Code, r.Stderr, c.words)
		}
		// What trying again cannot mend is not tried again.
		if strings.Contains(r.Stderr, "gave up after") {
			t.Errorf("dutchman %s was retried: %q", strings.Join(c.args, " "), r.Stderr)
		}
	}
	// No daemon at all.
	r := harness.NewDaemon(t)
	res := r.Run("images")
	if res.Code == 0 || !strings.Contains(res.Stderr, "cannot reach the dutchman daemon") {
		t.Errorf("images without a daemon: %d %q", res.Code, res.Stderr)
	}
}

func TestTagPushAndPullBack(t *testing.T) {
	reg := harness.StartRegistry(t)
	ims := harness.PushTestImages(t, reg)
	d := harness.StartDaemon(t)
	d.MustRun("pull", ims.Busybox)
	target := reg.Ref("pushed/busybox:v2")
	d.MustRun("tag", ims.Busybox, target)
	out := d.MustRun("push", target)
	if !strings.Contains(out, "Digest: "+ims.BusyboxDigest.String()) {
		t.Errorf("push output:\n%s", out)
	}
	// Push to another name without tagging first, as podman push SRC DEST does.
	d.MustRun("push", ims.Busybox, reg.Ref("pushed/other:v3"))

	// The registry now serves both names, with the same manifest: check with skopeo.
	for _, ref := range []string{target, reg.Ref("pushed/other:v3")} {
		out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+ref).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ims.BusyboxDigest.String()) {
			t.Errorf("skopeo inspect %s: %v\n%s", ref, err, out)
		}
	}
	d.MustRun("rmi", ims.Busybox, target)
	d.MustRun("pull", target)
	if im := inspect(t, d, target); im.Digest != ims.BusyboxDigest.String() {
		t.Errorf("pulled back %s, want %s", im.Digest, ims.BusyboxDigest)
	}
	// Pushing to a registry that is gone fails clearly.
	reg.Stop()
	r := d.Run("push", target)
	if r.Code == 0 || !strings.Contains(r.Stderr, "connection refused") {
		t.Errorf("push to a stopped registry: %d %q", r.Code, r.Stderr)
	}
}

func TestSaveAndLoad(t *testing.T) {
	reg, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	d.MustRun("pull", ims.Layered)
	d.MustRun("pull", ims.Busybox)
	dir := harness.Dir(t)
	archive := filepath.Join(dir, "images.tar")
	d.MustRun("save", "-o", archive, ims.Layered, ims.Busybox)

	// Real tools read it: skopeo as an OCI archive, go-containerregistry as docker save.
	if out, err := exec.Command("skopeo", "inspect", "oci-archive:"+archive+":v1").CombinedOutput(); err != nil || !strings.Contains(string(out), `"Layers"`) {
		t.Errorf("skopeo inspect of the saved archive: %v\n%s", err, out)
	}
	tag, _ := name.NewTag(ims.Layered)
	if img, err := tarball.ImageFromPath(archive, &tag); err != nil {
		t.Errorf("read as a docker save archive: %v", err)
	} else if id, _ := img.ConfigName(); id.String() != inspect(t, d, ims.Layered).ID {
		t.Errorf("docker view of the archive: image ID %s, want %s", id, inspect(t, d, ims.Layered).ID)
	}

	d.MustRun("rmi", ims.Layered, ims.Busybox)
	out := d.MustRun("load", "-i", archive)
	for _, want := range []string{"Loaded image: " + ims.Layered, "Loaded image: " + ims.Busybox} {
		if !strings.Contains(out, want) {
			t.Errorf("load output lacks %q:\n%s", want, out)
		}
	}
	if im := inspect(t, d, ims.Layered); im.Digest != ims.LayeredDigest.String() {
		t.Errorf("loaded digest %s, want %s (an OCI layout keeps manifests as they were)", im.Digest, ims.LayeredDigest)
	}

	// From standard input.
	d.MustRun("rmi", ims.Busybox)
	data, _ := os.ReadFile(archive)
	if r := d.RunStdin(data, "load"); r.Code != 0 || !strings.Contains(r.Stdout, "Loaded image: "+ims.Busybox) {
		t.Errorf("load from stdin: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}

	// An archive skopeo made from the registry, and an OCI layout directory.
	skopeoTar := filepath.Join(dir, "skopeo.tar")
	if out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "docker://"+reg.Ref("test/shared:v1"),
		"oci-archive:"+skopeoTar+":"+reg.Ref("test/shared:v1")).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	if out := d.MustRun("load", "-i", skopeoTar); !strings.Contains(out, "Loaded image: "+reg.Ref("test/shared:v1")) {
		t.Errorf("load of skopeo's archive:\n%s", out)
	}
	ociDir := filepath.Join(dir, "layout")
	if out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "docker://"+ims.Multi,
		"oci:"+ociDir+":"+reg.Ref("test/multi:latest")).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy to a directory: %v\n%s", err, out)
	}
	if out := d.MustRun("load", "-i", ociDir); !strings.Contains(out, "Loaded image: "+ims.Multi) {
		t.Errorf("load of an OCI layout directory:\n%s", out)
	}

	// A docker save archive with uncompressed layers, as docker save writes them.
	legacy := filepath.Join(dir, "docker.tar")
	lp, _ := layout.FromPath(ociDir)
	idx, _ := lp.ImageIndex()
	m, _ := idx.IndexManifest()
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	dtag, _ := name.NewTag("legacy/app:v1")
	if err := tarball.WriteToFile(legacy, dtag, img); err != nil {
		t.Fatal(err)
	}
	if out := d.MustRun("load", "-i", legacy); !strings.Contains(out, "Loaded image: legacy/app:v1") {
		t.Errorf("load of a docker save archive:\n%s", out)
	}

	// Not an archive.
	if r := d.RunStdin([]byte("hello"), "load"); r.Code == 0 || !strings.Contains(r.Stderr, "load:") {
		t.Errorf("load of garbage: %d %q", r.Code, r.Stderr)
	}
}

func TestCredentialsFromDockerConfig(t *testing.T) {
	dir := harness.Dir(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o644)
	reg := harness.StartRegistry(t, harness.WithHtpasswd(htpasswd))
	ref := reg.Ref("private/busybox:v1")
	pushAuthed(t, reg, ref, "alice", "s3cret")

	noCreds := harness.StartDaemon(t, harness.WithEnv("DOCKER_CONFIG="+filepath.Join(dir, "empty")))
	r := noCreds.Run("pull", ref)
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "unauthorized") {
		t.Errorf("pull without credentials: %d %q; want unauthorized", r.Code, r.Stderr)
	}

	cfgDir := filepath.Join(dir, "docker")
	os.MkdirAll(cfgDir, 0o700)
	auth := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, b64("alice:s3cret"))
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(auth), 0o600)
	withCreds := harness.StartDaemon(t, harness.WithEnv("DOCKER_CONFIG="+cfgDir))
	withCreds.MustRun("pull", ref)
}

func TestInsecureRegistryNeedsConfiguration(t *testing.T) {
	reg := harness.StartRegistry(t, harness.WithHost(nonLoopbackIPv4(t)))
	ref := reg.Ref("test/busybox:latest")
	harness.Push(t, ref, harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t))))

	d := harness.StartDaemon(t)
	r := d.Run("pull", ref)
	if r.Code == 0 || !strings.Contains(r.Stderr, "HTTP response to HTTPS client") {
		t.Errorf("plain-HTTP pull from %s without configuration: %d %q; want refused", reg.Addr, r.Code, r.Stderr)
	}
	cfg := harness.StartDaemon(t, harness.WithArgs("--insecure-registry", reg.Addr))
	cfg.MustRun("pull", ref)
	if out := cfg.MustRun("info"); !strings.Contains(out, "Insecure registries: "+reg.Addr) {
		t.Errorf("info does not list the insecure registry:\n%s", out)
	}
}

func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address to serve a registry that is not on loopback")
	return ""
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func pushAuthed(t *testing.T, reg *harness.Registry, ref, user, password string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t)))
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
}

//go:build linux

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// treeOwner is who owns the mount point in these tests: an ordinary user, so that the
// tree showing the owner (not root, the daemon's user) is something a test can see.
const treeOwner = 1000

// treeDaemon starts a daemon that mounts the tree, with busybox pulled. It checks that
// the daemon unmounts the tree when it stops.
func treeDaemon(t *testing.T, opts ...harness.DaemonOption) (*harness.Daemon, string) {
	t.Helper()
	_, ims := harness.SharedImages(t)
	d := harness.NewDaemon(t, append([]harness.DaemonOption{harness.WithTree()}, opts...)...)
	if err := os.Mkdir(d.Tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d.Tree, treeOwner, treeOwner); err != nil {
		t.Fatal(err)
	}
	// The owner reaches his tree through the test's directories (made 0700).
	for _, dir := range []string{d.Dir, filepath.Dir(d.Dir)} {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.RemoveContainers()
		if err := d.Stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
		if m := harness.Mounts(d.Tree); len(m) > 0 {
			t.Errorf("the tree is still mounted after the daemon stopped: %v", m)
		}
	})
	d.MustRun("pull", "-q", ims.Busybox)
	return d, ims.Busybox
}

// sh runs a bash script in the tree, as a person would at a prompt (as root), with a
// limit.
func sh(t *testing.T, d *harness.Daemon, script string) harness.Result {
	t.Helper()
	return shAs(t, d, nil, script)
}

// ownerSh runs a bash script in the tree as the tree's owner, an ordinary user.
func ownerSh(t *testing.T, d *harness.Daemon, script string) harness.Result {
	t.Helper()
	return shAs(t, d, &syscall.Credential{Uid: treeOwner, Gid: treeOwner, Groups: []uint32{}}, script)
}

// mustOwnerSh runs a script as the tree's owner, which must succeed, and returns its
// output.
func mustOwnerSh(t *testing.T, d *harness.Daemon, script string) string {
	t.Helper()
	r := ownerSh(t, d, script)
	if r.Code != 0 {
		t.Fatalf("%s (as uid %d): exit %d\nstdout: %s\nstderr: %s", script, treeOwner, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func shAs(t *testing.T, d *harness.Daemon, cred *syscall.Credential, script string) harness.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = d.Tree
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host(), "LC_ALL=C")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(cmd.Env, "HOME=/tmp")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after a minute (a hung tree?)\nstdout: %s\nstderr: %s", script, out.String(), errb.String())
	}
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return harness.Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// shUntil runs script until it prints one of wants (a save by rename is applied in the
// background), and fails the test after 20 seconds.
func shUntil(t *testing.T, d *harness.Daemon, script string, wants ...string) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		r := sh(t, d, script)
		for _, w := range wants {
			if r.Code == 0 && r.Stdout == w {
				return ""
			}
		}
		return fmt.Sprintf("%s: exit %d, %q; want one of %q", script, r.Code, r.Stdout, wants)
	})
}

// mustSh runs script and fails the test unless it succeeds; it returns the output.
func mustSh(t *testing.T, d *harness.Daemon, script string) string {
	t.Helper()
	r := sh(t, d, script)
	if r.Code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", script, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// failSh runs script, which must fail saying words on stderr.
func failSh(t *testing.T, d *harness.Daemon, script, words string) {
	t.Helper()
	r := sh(t, d, script)
	if r.Code == 0 || !strings.Contains(r.Stderr, words) {
		t.Errorf("%s: exit %d, stderr %q; want a failure saying %q", script, r.Code, r.Stderr, words)
	}
}

func TestTreeRootBelongsToTheUser(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("create", "--name", "web", bb, "true")

	out := mustSh(t, d, "ls -a")
	for _, name := range []string{".", "..", "README.md", "info", "events", "containers", "images", "volumes"} {
		if !strings.Contains("\n"+out, "\n"+name+"\n") {
			t.Errorf("ls -a of the tree lacks %s:\n%s", name, out)
		}
	}
	// Every file shows the mount point's owner, not the daemon's root; root filesystems
	// and layers show their own owners.
	own := mustSh(t, d, "find . \\( -name rootfs -o -name layers \\) -prune -o -exec stat -c '%u:%g %n' {} +")
	for _, l := range strings.Split(strings.TrimSpace(own), "\n") {
		if !strings.HasPrefix(l, fmt.Sprintf("%d:%d ", treeOwner, treeOwner)) {
			t.Errorf("owner of %s; want %d:%d", l, treeOwner, treeOwner)
		}
	}
	if !strings.Contains(mustSh(t, d, "cat README.md"), "echo start > containers/web/ctl") {
		t.Errorf("README.md does not explain the verbs")
	}
	info := mustSh(t, d, "cat info")
	for _, want := range []string{"containers: 1\n", "images: 1\n", "runtimes: oci vm\n", "data_root: " + d.DataRoot + "\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("info lacks %q:\n%s", want, info)
		}
	}
	// Inode numbers are stable while the object lives, and new for a new object.
	ino := func() string { return mustSh(t, d, "stat -c %i containers/web containers/web/state") }
	first := ino()
	mustSh(t, d, "ls -lR containers >/dev/null")
	if again := ino(); again != first {
		t.Errorf("inode numbers changed: %q then %q", first, again)
	}
	d.MustRun("rm", "web")
	d.MustRun("create", "--name", "web", bb, "true")
	if again := ino(); again == first {
		t.Errorf("a new container under the same name has the old inode numbers %q", again)
	}
	failSh(t, d, "echo x > info", "Permission denied")
	failSh(t, d, "touch images/newfile", "")

	// Down, the plain directory explains itself.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.Tree, "README.md"))
	if err != nil || !strings.Contains(string(b), "not running") {
		t.Errorf("README.md of the stopped tree: %q, %v", b, err)
	}
	if st, err := os.Stat(d.Tree); err != nil || st.Mode().Perm() != 0o555 {
		t.Errorf("mode of the stopped tree's directory: %v, %v; want 0555", st.Mode(), err)
	}
}

func TestTreeContainerVerbs(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("create", "--name", "web", bb, "sh", "-c", sleeper)
	if got := mustSh(t, d, "cat containers/web/state"); got != "created\n" {
		t.Errorf("state of a created container: %q", got)
	}
	if got := mustSh(t, d, "cat containers/web/ctl"); got != "start\nrm\n" {
		t.Errorf("ctl of a created container offers %q", got)
	}
	// The write returns once the container runs: the next read sees it.
	if got := mustSh(t, d, "echo start > containers/web/ctl && cat containers/web/state"); got != "running\n" {
		t.Errorf("state right after echo start: %q", got)
	}
	if got := mustSh(t, d, "cat containers/web/ctl"); !strings.Contains(got, "stop [SECONDS]\n") || strings.Contains(got, "start\n") {
		t.Errorf("ctl of a running container offers %q", got)
	}
	var st struct {
		State     string  `json:"state"`
		Pid       int     `json:"pid"`
		StartedAt *string `json:"started_at"`
		ExitCode  int     `json:"exit_code"`
		Image     struct {
			Digest string `json:"digest"`
		} `json:"image"`
	}
	if err := json.Unmarshal([]byte(mustSh(t, d, "cat containers/web/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != "running" || st.Pid == 0 || st.StartedAt == nil || !strings.HasPrefix(st.Image.Digest, "sha256:") {
		t.Errorf("status.json of a running container: %+v", st)
	}
	if cfg := mustSh(t, d, "cat containers/web/config.json"); !strings.Contains(cfg, `"ociVersion"`) || !strings.Contains(cfg, "trap") {
		t.Errorf("config.json is not the container's OCI spec:\n%s", cfg)
	}

	// Bad verbs and arguments: EINVAL, and the message where people look.
	failSh(t, d, "echo bogus > containers/web/ctl", "Invalid argument")
	if got := mustSh(t, d, "cat containers/web/error"); !strings.Contains(got, `unknown verb "bogus"`) {
		t.Errorf("error after a bad verb: %q", got)
	}
	if !strings.Contains(mustSh(t, d, "cat events"), `unknown verb \"bogus\"`) {
		t.Errorf("events lack the bad verb's error")
	}
	failSh(t, d, "echo kill NOSUCHSIG > containers/web/ctl", "Invalid argument")
	failSh(t, d, "echo stop soon > containers/web/ctl", "Invalid argument")
	// A verb the state forbids: EBUSY.
	failSh(t, d, "echo unpause > containers/web/ctl", "Device or resource busy")
	// Read-only files refuse writes.
	failSh(t, d, "echo stopped > containers/web/state", "Permission denied")

	mustSh(t, d, "echo kill USR1 > containers/web/ctl")
	eventually(t, 10*time.Second, func() string {
		if out := mustSh(t, d, "grep -c 'got USR1' containers/web/logs || true"); out != "1\n" {
			return "logs lack the trap's answer to USR1: " + out
		}
		return ""
	})
	if got := mustSh(t, d, "echo pause > containers/web/ctl; cat containers/web/state; echo unpause > containers/web/ctl; cat containers/web/state"); got != "paused\nrunning\n" {
		t.Errorf("pause, unpause: %q", got)
	}
	// printf without a newline: the verb runs when the file is closed.
	if got := mustSh(t, d, "printf 'stop 5' > containers/web/ctl; cat containers/web/state"); got != "stopped\n" {
		t.Errorf("state after stop: %q", got)
	}
	if err := json.Unmarshal([]byte(mustSh(t, d, "cat containers/web/status.json")), &st); err != nil || st.ExitCode != 0 || st.State != "stopped" {
		t.Errorf("status.json after stop: %+v %v", st, err)
	}
	if got := mustSh(t, d, "cat containers/web/stdout"); got != "ready\ngot USR1\ngot TERM\n" {
		t.Errorf("stdout: %q", got)
	}
	// Several verbs in one write run in order.
	if got := mustSh(t, d, "printf 'start\\nstop 1\\n' > containers/web/ctl; cat containers/web/state"); got != "stopped\n" {
		t.Errorf("start then stop in one write: %q", got)
	}
	// rm: the directory goes at once, with no stale cache.
	if got := mustSh(t, d, "echo rm > containers/web/ctl; ls containers; test -e containers/web && echo still there; true"); got != "" {
		t.Errorf("after rm: %q", got)
	}
}

func TestTreeStreamsGrowLikeFiles(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("run", "-d", "--name", "ticker", bb, "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")

	// tail -f sees lines written after it started.
	out := mustSh(t, d, "timeout 20 tail -n 0 -f containers/ticker/logs | head -n 3")
	if n := strings.Count(out, "tick "); n != 3 {
		t.Errorf("tail -f of logs printed %q", out)
	}
	// The size a stat shows is the size a read finds.
	d.MustRun("run", "--name", "burst", bb, "sh", "-c", "seq 1 20000; seq 1 100 >&2")
	size := mustSh(t, d, "stat -c %s containers/burst/stdout; wc -c < containers/burst/stdout; stat -c %s containers/burst/logs; wc -c < containers/burst/logs")
	f := strings.Fields(size)
	if len(f) != 4 || f[0] != f[1] || f[2] != f[3] || f[0] == "0" {
		t.Errorf("stat size and bytes read differ: %q", size)
	}
	// logs holds both streams' bytes in the order the shim read them (it reads the two
	// pipes at once, so a line of one can be cut by the other's: count bytes, not lines).
	if got := mustSh(t, d, "tail -n 1 containers/burst/stdout; tail -n 1 containers/burst/stderr; echo $(( $(wc -c < containers/burst/stdout) + $(wc -c < containers/burst/stderr) - $(wc -c < containers/burst/logs) ))"); got != "20000\n100\n0\n" {
		t.Errorf("streams of burst (last lines, bytes missing from logs): %q", got)
	}
	// events is a growing file too.
	ev := sh(t, d, `timeout 20 tail -n 0 -f events | grep -m 1 -o '"name":"late"' & sleep 1; `+harness.Binary(t)+` create --name late `+bb+` true >/dev/null; wait`)
	if !strings.Contains(ev.Stdout, `"name":"late"`) {
		t.Errorf("tail -f events missed a new container: %q %q", ev.Stdout, ev.Stderr)
	}
}

func TestTreeImages(t *testing.T) {
	reg, ims := harness.SharedImages(t)
	d, _ := treeDaemon(t)
	host := strings.SplitN(ims.Layered, "/", 2)[0]

	mustSh(t, d, "echo "+ims.Layered+" > images/pull")
	dir := "images/" + host + "/" + strings.Replace(strings.SplitN(ims.Layered, "/", 2)[1], ":", "/", 1)
	got := mustSh(t, d, "cat "+dir+"/ref "+dir+"/digest "+dir+"/platform")
	if want := ims.Layered + "\n" + ims.LayeredDigest.String() + "\nlinux/amd64\n"; got != want {
		t.Errorf("%s: ref, digest, platform %q; want %q", dir, got, want)
	}
	manifest := mustSh(t, d, "cat "+dir+"/manifest.json")
	if sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(manifest))); sum != ims.LayeredDigest.String() {
		t.Errorf("manifest.json hashes to %s; want %s", sum, ims.LayeredDigest)
	}
	if !strings.Contains(mustSh(t, d, "cat "+dir+"/config.json"), `"rootfs"`) {
		t.Errorf("config.json is not the image's config")
	}
	if got := mustSh(t, d, "cat images/by-digest/sha256-"+ims.LayeredDigest.Hex+"/digest"); got != ims.LayeredDigest.String()+"\n" {
		t.Errorf("by-digest: %q", got)
	}
	if got := mustSh(t, d, "cat images/pull"); got != "" {
		t.Errorf("images/pull with no pull under way: %q", got)
	}

	// Bad input: EINVAL, an unknown image: ENOENT, the message in images/error.
	failSh(t, d, "echo NOT/valid > images/pull", "Invalid argument")
	if got := mustSh(t, d, "cat images/error"); !strings.Contains(got, `invalid reference "NOT/valid"`) {
		t.Errorf("images/error: %q", got)
	}
	failSh(t, d, "echo "+reg.Ref("test/nothere:v1")+" > images/pull", "No such file or directory")
	failSh(t, d, "echo frobnicate > "+dir+"/ctl", "Invalid argument")

	// tag and rm through the image's ctl.
	tagged := host + "/test/retagged/v2"
	mustSh(t, d, "echo tag "+host+"/test/retagged:v2 > "+dir+"/ctl")
	if got := mustSh(t, d, "cat images/"+tagged+"/digest"); got != ims.LayeredDigest.String()+"\n" {
		t.Errorf("the new tag's digest: %q", got)
	}
	mustSh(t, d, "echo rm > images/"+tagged+"/ctl")
	if r := sh(t, d, "ls images/"+tagged); r.Code == 0 {
		t.Errorf("the removed tag is still listed: %q", r.Stdout)
	}
	if got := mustSh(t, d, "cat "+dir+"/digest"); got != ims.LayeredDigest.String()+"\n" {
		t.Errorf("the first tag after removing the second: %q", got)
	}
}

func TestTreeWriteHonoursInterrupts(t *testing.T) {
	d, bb := treeDaemon(t)
	// A shell as PID 1 without a trap ignores SIGTERM: stop waits for its grace period.
	d.MustRun("run", "-d", "--name", "stubborn", bb, "sh", "-c", "while true; do sleep 0.1; done")
	// Interrupted after a second, the write fails; had it waited for the stop, the
	// state below would be stopped, not stopping.
	r := sh(t, d, "timeout -s INT 1 bash -c 'echo stop 30 > containers/stubborn/ctl'")
	if r.Code == 0 {
		t.Errorf("an interrupted stop: exit 0; want the write to fail")
	}
	if got := mustSh(t, d, "cat containers/stubborn/state"); got != "stopping\n" {
		t.Errorf("state after the interrupted stop: %q; want the stop still under way", got)
	}
	if got := mustSh(t, d, "echo kill > containers/stubborn/ctl; cat containers/stubborn/state"); got != "stopped\n" {
		t.Errorf("after kill: %q", got)
	}
}

func TestTreeParallelWriters(t *testing.T) {
	d, bb := treeDaemon(t)
	const n = 6
	for i := range n {
		d.MustRun("create", "--name", fmt.Sprintf("p%d", i), bb, "sh", "-c", sleeper)
	}
	script := "for i in $(seq 0 " + fmt.Sprint(n-1) + "); do echo start > containers/p$i/ctl & done; " +
		"for j in $(seq 20); do ls -l containers/*/ >/dev/null; done; wait; cat containers/*/state"
	if got := mustSh(t, d, script); got != strings.Repeat("running\n", n) {
		t.Errorf("after %d parallel starts: %q", n, got)
	}
	script = "for i in $(seq 0 " + fmt.Sprint(n-1) + "); do echo 'rm -f' > containers/p$i/ctl & done; wait; ls containers"
	if got := mustSh(t, d, script); got != "" {
		t.Errorf("after %d parallel removals: %q", n, got)
	}
}

// TestTreeNeverHangsUnderChurn walks the whole tree, reading every file, while
// containers come and go. Nothing may hang, and nothing may fail but a file that went
// away between listing and reading.
func TestTreeNeverHangsUnderChurn(t *testing.T) {
	d, bb := treeDaemon(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("churn%d", i%3)
			d.Run("rm", "-f", name)
			d.Run("create", "--name", name, bb, "sh", "-c", sleeper)
			sh(t, d, "echo start > containers/"+name+"/ctl; echo 'stop 2' > containers/"+name+"/ctl")
		}
	})
	deadline := time.Now().Add(8 * time.Second)
	walks := 0
	for time.Now().Before(deadline) {
		walks++
		err := filepath.WalkDir(d.Tree, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if _, err := os.Lstat(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if e.Type().IsRegular() {
				done := make(chan error, 1)
				go func() { _, err := os.ReadFile(p); done <- err }()
				select {
				case err := <-done:
					if err != nil && !errors.Is(err, fs.ErrNotExist) {
						return fmt.Errorf("read %s: %w", p, err)
					}
				case <-time.After(20 * time.Second):
					return fmt.Errorf("read %s: no answer in 20s: the tree hangs", p)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("walk %d: %v", walks, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d walks of the whole tree", walks)
}

func TestTreeStaleMountIsClearedAtStart(t *testing.T) {
	d, bb := treeDaemon(t)
	// A container's shim, started after the mount, outlives the daemon: it must not
	// hold the tree's FUSE device, which would keep the dead tree hanging instead of
	// failing with ENOTCONN.
	// (The first container takes the spare shim started before the mount; the next
	// spare starts after it.)
	d.MustRun("run", "-d", "--name", "survivor", bb, "sleep", "600")
	time.Sleep(time.Second)
	d.MustRun("run", "-d", "--name", "survivor2", bb, "sleep", "600")
	d.Kill()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Tree, &st); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the tree of a killed daemon: %v; want ENOTCONN", err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if got := mustSh(t, d, "ls"); got != "README.md\nbuilds\ncompose\ncontainers\nevents\nimages\ninfo\nkernels\nnetworks\nvolumes\n" {
		t.Errorf("ls of the tree after a restart over a stale mount: %q", got)
	}
	if strings.Count(mustSh(t, d, "grep -c ' "+d.Tree+" ' /proc/mounts"), "1") != 1 {
		t.Errorf("the tree is mounted more than once")
	}
	// A second daemon cannot mount over a live tree.
	other := harness.NewDaemon(t)
	other.Tree = d.Tree
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), "already a mounted FUSE filesystem") {
		other.Stop()
		t.Errorf("a second daemon on a mounted tree: %v", err)
	}
}

// spec is a spec file body running sleeper with a word to tell versions apart.
func spec(bb, word string) string {
	return fmt.Sprintf("image: %s\ncommand: [sh, -c, \"echo %s; %s\"]\nstop_grace_period: 5s\n", bb, word, strings.ReplaceAll(sleeper, `"`, `\"`))
}

// containerID reads the ID of container name from its status.json.
func containerID(t *testing.T, d *harness.Daemon, name string) string {
	t.Helper()
	var st struct {
		ID    string `json:"id"`
		Stale bool   `json:"stale"`
	}
	if err := json.Unmarshal([]byte(mustSh(t, d, "cat containers/"+name+"/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	return st.ID
}

func TestTreeSpecFiles(t *testing.T) {
	d, bb := treeDaemon(t)
	if err := os.WriteFile(filepath.Join(d.Dir, "v1.yaml"), []byte(spec(bb, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Saving a spec creates the container, not started.
	if got := mustSh(t, d, "cp ../v1.yaml containers/web.yaml && cat containers/web/state"); got != "created\n" {
		t.Fatalf("state after saving a spec: %q", got)
	}
	if got := mustSh(t, d, "cat containers/web/spec.yaml"); !strings.Contains(got, "image: "+bb) || !strings.Contains(got, "stop_grace_period: 5s") {
		t.Errorf("spec.yaml: %q", got)
	}
	mustSh(t, d, "echo start > containers/web/ctl")
	first := containerID(t, d, "web")

	// A changed spec recreates the container, and a running one comes back running.
	// sed -i renames a new file over the spec, which is applied in the background.
	mustSh(t, d, "sed -i 's/echo v1/echo v2/' containers/web.yaml")
	shUntil(t, d, "cat containers/web/state containers/web/stdout", "running\nv2\nready\n", "running\nv2\n")
	second := containerID(t, d, "web")
	if second == first {
		t.Errorf("a changed spec did not recreate the container")
	}
	// Saving the same spec again changes nothing.
	mustSh(t, d, "touch containers/web.yaml && cat containers/web.yaml > /tmp/same.$$ && cp /tmp/same.$$ containers/web.yaml && rm /tmp/same.$$")
	if id := containerID(t, d, "web"); id != second {
		t.Errorf("an unchanged save recreated the container")
	}

	// An invalid spec changes nothing that runs and says why, with the line.
	r := sh(t, d, "printf 'image: "+bb+"\\nfrobnicate: 1\\n' > /tmp/bad.$$; cp /tmp/bad.$$ containers/web.yaml; s=$?; rm /tmp/bad.$$; exit $s")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Invalid argument") {
		t.Errorf("cp of an invalid spec: exit %d, %q; want the close to fail with EINVAL", r.Code, r.Stderr)
	}
	if got := mustSh(t, d, "cat containers/web/error"); !strings.Contains(got, "web.yaml: line 2: unknown key frobnicate") {
		t.Errorf("error after an invalid spec: %q", got)
	}
	if got := mustSh(t, d, "cat containers/web/state; grep -c frobnicate containers/web.yaml; grep -c '\"stale\": true' containers/web/status.json"); got != "running\n1\n1\n" {
		t.Errorf("after an invalid spec (state, the file kept, stale): %q", got)
	}
	if id := containerID(t, d, "web"); id != second {
		t.Errorf("an invalid spec recreated the container")
	}
	if !strings.Contains(mustSh(t, d, "cat events"), "unknown key frobnicate") {
		t.Errorf("events lack the invalid spec's error")
	}

	// vim, with its default settings (rename the old file away, write a new one) and
	// with backupcopy=yes (write in place), and an editor's atomic save.
	if err := os.WriteFile(filepath.Join(d.Dir, "v3.yaml"), []byte(spec(bb, "v3")), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSh(t, d, "vim -u NONE -N -es -c '%d' -c 'r ../v3.yaml' -c 'wq' containers/web.yaml")
	if got := mustSh(t, d, "cat containers/web/state containers/web/error; head -n 1 containers/web/stdout"); got != "running\nv3\n" {
		t.Errorf("after vim's save: %q", got)
	}
	if strings.Contains(mustSh(t, d, "cat containers/web/status.json"), `"stale": true`) {
		t.Errorf("still stale after a good save")
	}
	mustSh(t, d, "vim -u NONE -N -es -c 'set backupcopy=yes' -c '%s/echo v3/echo v4/' -c 'wq' containers/web.yaml")
	if got := mustSh(t, d, "head -n 1 containers/web/stdout"); got != "v4\n" {
		t.Errorf("after vim's save with backupcopy=yes: %q", got)
	}
	mustSh(t, d, "sed 's/echo v4/echo v5/' containers/web.yaml > containers/.web.yaml.tmp && mv containers/.web.yaml.tmp containers/web.yaml")
	shUntil(t, d, "cat containers/web/state; head -n 1 containers/web/stdout", "running\nv5\n")
	// An invalid atomic save is refused at the rename: the spec in use stays.
	failSh(t, d, "printf 'image: "+bb+"\\nfrobnicate: 1\\n' > containers/.web.yaml.tmp && mv containers/.web.yaml.tmp containers/web.yaml", "")
	if got := mustSh(t, d, "grep -c 'echo v5' containers/web.yaml; cat containers/web/state; rm containers/.web.yaml.tmp"); got != "1\nrunning\n" {
		t.Errorf("after an invalid atomic save (the old spec, running): %q", got)
	}
	// No editor's leftovers became containers, and no scratch file is a spec.
	mustSh(t, d, "cd containers && touch .web.yaml.swp web.yaml~ 4913 .DS_Store ._web.yaml notes.txt && mkdir .Trash-1000")
	if got := mustSh(t, d, "ls -A containers"); got != ".DS_Store\n.Trash-1000\n._web.yaml\n.web.yaml.swp\n4913\nnotes.txt\nweb\nweb.yaml\nweb.yaml~\n" {
		t.Errorf("containers/ with scratch files: %q", got)
	}
	if got := d.MustRun("ps", "-a", "-q"); strings.Count(got, "\n") != 1 {
		t.Errorf("containers after scratch files: %q", got)
	}
	// A symbolic link is no spec: the daemon reads specs as root. The rename is refused
	// (EINVAL, which mv words as "a subdirectory of itself") and the link stays.
	failSh(t, d, "ln -s /etc/shadow containers/.link && mv containers/.link containers/shadow.yaml", "")
	if got := mustSh(t, d, "grep -c 'shadow.yaml: a spec file cannot be a symbolic link' events >/dev/null && echo reported; rm containers/.link; ls -A containers | grep -c shadow || true"); got != "reported\n0\n" {
		t.Errorf("a symlink saved as a spec: %q", got)
	}
	// Names: a spec for an invalid container name, a file over a container's directory.
	failSh(t, d, "touch 'containers/bad name.yaml'", "Invalid argument")
	failSh(t, d, "touch containers/web", "")
	failSh(t, d, "rm -f containers/web/state", "Operation not permitted")

	// Renamed away and back within the grace period: nothing happens.
	id := containerID(t, d, "web")
	mustSh(t, d, "mv containers/web.yaml containers/web.yaml.bak && mv containers/web.yaml.bak containers/web.yaml")
	time.Sleep(3 * time.Second)
	if got := containerID(t, d, "web"); got != id {
		t.Errorf("a spec renamed away and back recreated its container")
	}
	// Moved to the trash: the container goes after the grace period; restored, it
	// comes back.
	mustSh(t, d, "mv containers/web.yaml containers/.Trash-1000/")
	gone := func() string {
		if r := sh(t, d, "ls containers/web"); r.Code == 0 {
			return "the container of a deleted spec is still there"
		}
		return ""
	}
	eventually(t, 20*time.Second, gone)
	mustSh(t, d, "mv containers/.Trash-1000/web.yaml containers/")
	shUntil(t, d, "cat containers/web/state", "created\n")
	// Deleted: the container goes after the grace period.
	mustSh(t, d, "rm containers/web.yaml")
	eventually(t, 20*time.Second, gone)
	if got := d.MustRun("ps", "-a", "-q"); got != "" {
		t.Errorf("containers after the spec went: %q", got)
	}
}

func TestTreeSpecFilesOfOtherDoors(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("create", "--name", "cli", "-e", "A=1", "--restart", "on-failure:2", bb, "echo", "$HOME")
	got := mustSh(t, d, "cat containers/cli.yaml")
	for _, want := range []string{"image: " + bb, "command: [echo, $$HOME]", "- A=1", "restart: on-failure:2"} {
		if !strings.Contains(got, want) {
			t.Errorf("the spec file of a container the CLI made lacks %q:\n%s", want, got)
		}
	}
	// Saving it unchanged changes nothing; it reads back to the same container.
	id := containerID(t, d, "cli")
	mustSh(t, d, "cp containers/cli.yaml /tmp/cli.$$ && cp /tmp/cli.$$ containers/cli.yaml && rm /tmp/cli.$$")
	if containerID(t, d, "cli") != id {
		t.Errorf("saving a CLI container's own spec recreated it")
	}
	d.MustRun("rename", "cli", "renamed")
	eventually(t, 10*time.Second, func() string {
		if got := mustSh(t, d, "ls containers"); got != "renamed\nrenamed.yaml\n" {
			return "after a rename: " + got
		}
		return ""
	})
	d.MustRun("rm", "renamed")
	eventually(t, 10*time.Second, func() string {
		if got := mustSh(t, d, "ls containers"); got != "" {
			return "after rm: " + got
		}
		return ""
	})
}

func TestTreeXattrs(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("create", "--name", "web", bb, "true")
	for _, f := range []string{"containers/web/ctl", "containers/web.yaml", "images/pull", "containers"} {
		got := mustSh(t, d, "setfattr -n user.note -v hello "+f+" && getfattr --only-values -n user.note "+f+
			" && setfattr -x user.note "+f+" && getfattr -d "+f)
		if got != "hello" {
			t.Errorf("xattrs of %s: %q", f, got)
		}
	}
	failSh(t, d, "setfattr -n trusted.x -v 1 containers/web/ctl", "Operation not supported")
}

func TestTreeContainerRootfs(t *testing.T) {
	d, bb := treeDaemon(t)
	d.MustRun("run", "-d", "--name", "web", bb, "sh", "-c", sleeper)
	r := "containers/web/rootfs"

	// Both ways: what the host writes, the container reads, and the reverse.
	mustSh(t, d, "echo from-host > "+r+"/tmp/host.txt")
	if got := d.MustRun("exec", "web", "cat", "/tmp/host.txt"); got != "from-host\n" {
		t.Errorf("the container reads %q from a file the host wrote in rootfs/", got)
	}
	d.MustRun("exec", "web", "sh", "-c", "echo from-container > /tmp/ctr.txt")
	if got := mustSh(t, d, "cat "+r+"/tmp/ctr.txt"); got != "from-container\n" {
		t.Errorf("rootfs/ shows %q for a file the container wrote", got)
	}

	// Real owners and modes, root's included.
	if got := mustSh(t, d, "stat -c '%u:%g %a' "+r+"/bin/busybox "+r+"/tmp"); got != "0:0 755\n0:0 1777\n" {
		t.Errorf("owners and modes in rootfs/: %q", got)
	}
	// cp -a in keeps owners, modes, links and times; rsync, tar, find and du read out.
	mustSh(t, d, `mkdir -p ../src/sub && echo a > ../src/a && echo b > ../src/sub/b && ln -s a ../src/link &&
		ln ../src/a ../src/hard && chown 1234:5678 ../src/a && chmod 640 ../src/a && touch -d 2001-02-03 ../src/sub/b &&
		mkdir `+r+`/srv && cp -a ../src `+r+`/srv/src`)
	if got := d.MustRun("exec", "web", "stat", "-c", "%u:%g %a %h", "/srv/src/a"); got != "1234:5678 640 2\n" {
		t.Errorf("cp -a into rootfs/: owner, mode, links in the container %q", got)
	}
	if got := d.MustRun("exec", "web", "readlink", "/srv/src/link"); got != "a\n" {
		t.Errorf("a symlink copied in reads %q", got)
	}
	mustSh(t, d, "rsync -aH "+r+"/srv/src/ ../out/ && diff -r --no-dereference ../src ../out")
	if got := mustSh(t, d, "stat -c '%u:%g %a %h' ../out/a; stat -c %y ../out/sub/b | cut -c1-10"); got != "1234:5678 640 2\n2001-02-03\n" {
		t.Errorf("rsync -aH out of rootfs/: %q", got)
	}
	if got := mustSh(t, d, "tar -C "+r+"/srv -cf - src | tar -tvf - | grep -E ' src/(a|hard)'"); !strings.Contains(got, "1234/5678") {
		t.Errorf("tar of rootfs/ lost the owner: %q", got)
	}
	if got := mustSh(t, d, "find "+r+"/srv/src -type f | sort"); got != r+"/srv/src/a\n"+r+"/srv/src/hard\n"+r+"/srv/src/sub/b\n" {
		t.Errorf("find in rootfs/: %q", got)
	}
	if got := mustSh(t, d, "du -s --apparent-size -B1 "+r+"/bin/busybox | cut -f1; stat -c %s "+r+"/bin/busybox"); strings.Count(got, strings.SplitN(got, "\n", 2)[0]) != 2 {
		t.Errorf("du and stat disagree on busybox's size: %q", got)
	}
	// Inode numbers are stable.
	if a, b := mustSh(t, d, "stat -c %i "+r+"/srv/src/a"), mustSh(t, d, "ls -i "+r+"/srv/src/hard | cut -d' ' -f1"); a != b {
		t.Errorf("hard links in rootfs/ have inodes %q and %q", a, b)
	}

	// A container that swaps a directory for a symbolic link to / while the tree still
	// knows it as a directory leads nowhere: what the host then makes through it stays
	// in the container's storage.
	name := fmt.Sprintf("dutchman-escape-%d", time.Now().UnixNano())
	mustSh(t, d, "mkdir "+r+"/d && ls "+r+"/d")
	d.MustRun("exec", "web", "sh", "-c", "rmdir /d && ln -s / /d")
	sh(t, d, "touch "+r+"/d/"+name+"; mkdir "+r+"/d/"+name+".dir")
	// The link leads to the container's own root, not to its storage directory.
	if got := sh(t, d, "ls "+r+"/d/").Stdout; strings.Contains(got, "merged") || strings.Contains(got, "upper") {
		t.Errorf("a link to / in rootfs/ leads to the container's storage: %q", got)
	}
	for _, p := range []string{"/" + name, "/" + name + ".dir"} {
		if _, err := os.Lstat(p); err == nil {
			os.RemoveAll(p)
			t.Errorf("a file made through rootfs/ landed on the host at %s", p)
		}
	}

	// Device nodes the container makes are not opened through the tree (it is mounted
	// nodev), and neither is one it puts where the tree saw a regular file: the daemon
	// opens as root, and /dev/mem would hand the reader the host's memory.
	d.MustRun("exec", "web", "sh", "-c", "mknod /tmp/disk b 7 0 && echo plain > /tmp/swap")
	failSh(t, d, "head -c 1 "+r+"/tmp/disk", "Permission denied")
	mustSh(t, d, "cat "+r+"/tmp/swap")
	d.MustRun("exec", "web", "sh", "-c", "rm /tmp/swap && mknod /tmp/swap c 1 1")
	failSh(t, d, "head -c 1 "+r+"/tmp/swap", "")

	// stats and top: sampled on open.
	if got := mustSh(t, d, "cat containers/web/stats"); !strings.Contains(got, `"running": true`) || !strings.Contains(got, `"pids": `) {
		t.Errorf("stats of a running container: %q", got)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	json.Unmarshal([]byte(mustSh(t, d, "cat containers/web/status.json")), &st)
	if got := mustSh(t, d, "cat containers/web/top"); !strings.HasPrefix(got, "    PID") || !strings.Contains(got, fmt.Sprintf(" %d ", st.Pid)) {
		t.Errorf("top lacks the container's pid %d:\n%s", st.Pid, got)
	}

	// Stopped, the rootfs is still there to read and change; started, the container
	// sees the change.
	d.MustRun("stop", "-t", "1", "web")
	if got := mustSh(t, d, "cat "+r+"/tmp/host.txt && echo again > "+r+"/tmp/stopped.txt && cat containers/web/stats containers/web/top"); !strings.HasPrefix(got, "from-host\n") || !strings.Contains(got, `"running": false`) || strings.Count(got, "\n") != 1+8 {
		t.Errorf("rootfs/, stats and top of a stopped container: %q", got)
	}
	d.MustRun("start", "web")
	if got := d.MustRun("exec", "web", "cat", "/tmp/stopped.txt"); got != "again\n" {
		t.Errorf("a file written while the container was stopped reads %q", got)
	}
	d.MustRun("rm", "-f", "web")
	if r := sh(t, d, "ls "+r); r.Code == 0 {
		t.Errorf("rootfs/ of a removed container is still there")
	}
}

func TestTreeImageLayersAndRootfs(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d, _ := treeDaemon(t)
	d.MustRun("pull", "-q", ims.Layered)
	d.MustRun("pull", "-q", ims.Shared)
	host, rest, _ := strings.Cut(ims.Layered, "/")
	dir := "images/" + host + "/" + strings.Replace(rest, ":", "/", 1)

	// layers/: one directory per layer, bottom first, each its own content.
	ls := mustSh(t, d, "ls "+dir+"/layers")
	if n := strings.Count(ls, "\n"); n != 3 || !strings.HasPrefix(ls, "00-sha256-"+ims.BusyboxLayer.Hex+"\n01-sha256-") {
		t.Fatalf("layers/: %q", ls)
	}
	layers := strings.Fields(ls)
	if got := mustSh(t, d, "cat "+dir+"/layers/"+layers[1]+"/data/a.txt "+dir+"/layers/"+layers[2]+"/data/a.txt"); got != "version 1\nversion 2\n" {
		t.Errorf("a file in two layers: %q", got)
	}
	// The whiteout of layer 3, as overlayfs keeps it.
	if got := mustSh(t, d, "stat -c '%F %t:%T' "+dir+"/layers/"+layers[2]+"/etc/motd"); got != "character special file 0:0\n" {
		t.Errorf("a whiteout in layers/: %q", got)
	}

	// Device nodes in layers are shown, never opened.
	failSh(t, d, "head -c 1 "+dir+"/layers/"+layers[1]+"/data/loop", "Permission denied")
	failSh(t, d, "head -c 1 "+dir+"/layers/"+layers[1]+"/data/null", "Permission denied")

	// rootfs/: the merged file system a container starts from.
	root := dir + "/rootfs"
	if got := mustSh(t, d, "cat "+root+"/data/a.txt; ls "+root+"/data/opq; ls "+root+"/data/dir; test -e "+root+"/etc/motd || echo no motd"); got != "version 2\nnew.txt\nno motd\n" {
		t.Errorf("rootfs/ of the layered image: %q", got)
	}
	if got := mustSh(t, d, "stat -c '%u:%g %a' "+root+"/data/owned; getfattr --only-values -n user.origin "+root+"/data/a.txt 2>/dev/null; readlink "+root+"/data/abs"); got != "1000:1001 600\n/etc/passwd\n" {
		t.Errorf("owners, xattrs and links in rootfs/: %q", got)
	}
	if got := mustSh(t, d, "stat -c %a "+root); got != "755\n" {
		t.Errorf("rootfs/ has mode %q", got)
	}
	mustSh(t, d, "cp -a "+root+"/data ../copy && diff -r --no-dereference "+root+"/data/opq ../copy/opq")
	if got := mustSh(t, d, "tar -C "+root+" -cf - bin/busybox | tar -xOf - | cmp - /bin/busybox && echo same"); got != "same\n" {
		t.Errorf("tar of rootfs/bin/busybox: %q", got)
	}

	// Read-only, whoever asks; nothing changes.
	for _, cmd := range []string{
		"touch " + root + "/new", "echo x >> " + root + "/data/a.txt", "rm " + root + "/bin/busybox",
		"mkdir " + root + "/d", "chmod 777 " + root + "/data/a.txt", "mv " + root + "/data/a.txt " + root + "/data/b.txt",
		"setfattr -n user.x -v 1 " + root + "/data/a.txt", "touch " + dir + "/layers/" + layers[0] + "/new",
		"rm " + dir + "/layers/" + layers[0] + "/bin/busybox",
	} {
		failSh(t, d, cmd, "Read-only file system")
	}
	if got := mustSh(t, d, "cat "+root+"/data/a.txt"); got != "version 2\n" {
		t.Errorf("after refused writes, a.txt reads %q", got)
	}

	// A layer two images share shows in both, as two directories (the kernel wants one
	// parent per directory) with the same content.
	host2, rest2, _ := strings.Cut(ims.Shared, "/")
	dir2 := "images/" + host2 + "/" + strings.Replace(rest2, ":", "/", 1)
	if got := mustSh(t, d, "cmp "+dir+"/layers/"+layers[0]+"/bin/busybox "+dir2+"/layers/00-*/bin/busybox && stat -c %i "+dir+"/layers/"+layers[0]+" "+dir2+"/layers/00-*"); strings.Count(got, strings.SplitN(got, "\n", 2)[0]) != 1 {
		t.Errorf("a shared layer in two images: inodes %q; want two directories", got)
	}
	if got := mustSh(t, d, "cat "+dir2+"/rootfs/etc/shared"); got != "shared\n" {
		t.Errorf("rootfs/ of the shared image: %q", got)
	}

	// Removed, its views go: no mount of the image is left.
	d.MustRun("rmi", ims.Layered)
	for _, m := range harness.Mounts(d.DataRoot) {
		if strings.Contains(m, ims.LayeredDigest.Hex) {
			t.Errorf("the view of a removed image is still mounted: %s", m)
		}
	}
}

// TestTreeSpecsUnderGitAndRsync keeps the specs in a git repository in containers/ and
// syncs more in with rsync, as people who keep their configuration in git do.
func TestTreeSpecsUnderGitAndRsync(t *testing.T) {
	d, bb := treeDaemon(t)
	if err := os.WriteFile(filepath.Join(d.Dir, "v1.yaml"), []byte(spec(bb, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	// The tree is the user's (uid 1000); the tests run git as root.
	git := "git -c safe.directory='*' -c user.name=t -c user.email=t@example.com "
	// The containers' own directories are not the repository's business.
	mustSh(t, d, "cd containers && "+git+"init -q && echo '/*/' > .gitignore && cp ../../v1.yaml web.yaml && "+
		git+"add .gitignore web.yaml && "+git+"commit -qm v1")
	first := containerID(t, d, "web")
	mustSh(t, d, "sed -i 's/echo v1/echo v2/' containers/web.yaml")
	shUntil(t, d, "grep -c 'echo v2' containers/web/spec.yaml", "1\n")
	if containerID(t, d, "web") == first {
		t.Fatalf("sed -i did not recreate the container")
	}
	// git checkout writes the committed version back: it applies.
	mustSh(t, d, "cd containers && "+git+"checkout -q web.yaml && "+git+"status --porcelain")
	shUntil(t, d, "grep -c 'echo v1' containers/web/spec.yaml", "1\n")
	// rsync -a writes a temporary file and renames it over: a new container.
	mustSh(t, d, "mkdir ../specs && sed 's/echo v1/echo api/' ../v1.yaml > ../specs/api.yaml && rsync -a ../specs/ containers/")
	shUntil(t, d, "cat containers/api/state; grep -c 'echo api' containers/api/spec.yaml", "created\n1\n")
	if got := d.MustRun("ps", "-a", "-q"); strings.Count(got, "\n") != 2 {
		t.Errorf("containers after git and rsync: %q; want web and api", got)
	}
	if got := mustSh(t, d, "cd containers && "+git+"status --porcelain"); got != "?? api.yaml\n" {
		t.Errorf("git status in containers/: %q", got)
	}
}

// TestTreeFullDisk saves specs on a full disk: the save fails with ENOSPC, nothing is
// made, reads go on, and the same save works once there is room.
func TestTreeFullDisk(t *testing.T) {
	root := filepath.Join(harness.Dir(t), "small")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "size=48m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(root, syscall.MNT_DETACH) })
	d, bb := treeDaemon(t, harness.WithDataRoot(filepath.Join(root, "data")))
	if err := os.WriteFile(filepath.Join(d.Dir, "v1.yaml"), []byte(spec(bb, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustRun("create", "--name", "old", bb, "true")
	filler := filepath.Join(root, "filler")
	sh(t, d, "dd if=/dev/zero of="+filler+" bs=1M 2>/dev/null")

	failSh(t, d, "cp ../v1.yaml containers/web.yaml", "No space left on device")
	if r := sh(t, d, "ls containers/web"); r.Code == 0 {
		t.Errorf("a spec saved on a full disk made a container")
	}
	if got := mustSh(t, d, "cat containers/old/state; ls images"); !strings.HasPrefix(got, "created\n") {
		t.Errorf("reads on a full disk: %q", got)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if got := mustSh(t, d, "cp ../v1.yaml containers/web.yaml && cat containers/web/state"); got != "created\n" {
		t.Errorf("the same save with room: state %q", got)
	}
}

// TestTreeSpecEnvFiles loads env files next to the spec, and nothing outside the tree:
// the daemon reads them as root.
func TestTreeSpecEnvFiles(t *testing.T) {
	d, bb := treeDaemon(t)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(d.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", "image: "+bb+"\nenv_file: web.env\ncommand: [\"true\"]\n")
	write("shadow.yaml", "image: "+bb+"\nenv_file: /etc/passwd\ncommand: [\"true\"]\n")
	write("up.yaml", "image: "+bb+"\nenv_file: ../../../../../../etc/passwd\ncommand: [\"true\"]\n")

	mustSh(t, d, "echo GREETING=hello > containers/web.env && cp ../web.yaml containers/web.yaml")
	if got := mustSh(t, d, "grep -c GREETING=hello containers/web/config.json"); got != "1\n" {
		t.Errorf("an env file beside the spec did not reach the container: %q", got)
	}
	for _, name := range []string{"shadow", "up"} {
		failSh(t, d, "cp ../"+name+".yaml containers/"+name+".yaml", "Invalid argument")
		if got := mustSh(t, d, "cat events"); strings.Contains(got, "root:x:0:0") || !strings.Contains(got, name+".yaml: line 2: env file /etc/passwd not found") {
			t.Errorf("a spec naming /etc/passwd as its env file: events say\n%s", got)
		}
	}
	// No FIFO can be made in the tree's own directories (the daemon would block opening
	// it), nor in a subdirectory of them.
	failSh(t, d, "mkfifo containers/f.env", "Operation not permitted")
	failSh(t, d, "mkdir -p containers/sub && mkfifo containers/sub/f.env", "Operation not permitted")
}

// TestTreeVolumes makes, uses and removes volumes as directories, and works in one with
// the tools people use on files.
func TestTreeVolumes(t *testing.T) {
	d, bb := treeDaemon(t)
	mustSh(t, d, "mkdir volumes/data")
	if got := d.MustRun("volume", "ls", "-q"); got != "data\n" {
		t.Fatalf("volumes after mkdir: %q", got)
	}
	failSh(t, d, "mkdir 'volumes/bad name'", "Invalid argument")
	if got := mustSh(t, d, "cat volumes/error"); !strings.Contains(got, "bad name") {
		t.Errorf("volumes/error after a bad name: %q", got)
	}
	failSh(t, d, "mkdir volumes/data", "File exists")

	// POSIX behaviour with real tools, in the volume's data.
	v := "volumes/data"
	git := "git -c safe.directory='*' -c user.name=t -c user.email=t@example.com "
	mustSh(t, d, `mkdir -p ../src/sub && echo a > ../src/a && echo b > ../src/sub/b && ln -s a ../src/link && ln ../src/a ../src/hard &&
		chown 1234:5678 ../src/a && chmod 640 ../src/a && cp -a ../src `+v+`/cp && rsync -aH ../src/ `+v+`/rsync/ &&
		mkdir `+v+`/tar && tar -C ../src -cf - . | tar -C `+v+`/tar -xf - &&
		diff -r --no-dereference ../src `+v+`/cp && diff -r --no-dereference ../src `+v+`/rsync && diff -r --no-dereference ../src `+v+`/tar`)
	if got := mustSh(t, d, "stat -c '%u:%g %a %h' "+v+"/cp/a "+v+"/rsync/a; readlink "+v+"/cp/link"); got != "1234:5678 640 2\n1234:5678 640 2\na\n" {
		t.Errorf("owners, modes, hard and symbolic links in a volume: %q", got)
	}
	mustSh(t, d, "cd "+v+" && mkdir repo && cd repo && "+git+"init -q && echo x > f && "+git+"add f && "+git+"commit -qm one && "+git+"log --oneline | grep -c one")
	mustSh(t, d, "cd "+v+" && echo 1 >> app.log && echo 2 >> app.log && mv app.log app.log.1 && ln -s app.log.1 current && cat current | wc -l | grep -qx 2")
	if got := mustSh(t, d, "cd "+v+" && truncate -s 1G sparse && stat -c %s sparse && du -k sparse | cut -f1"); got != "1073741824\n0\n" {
		t.Errorf("a sparse file in a volume (size, blocks): %q", got)
	}
	mustSh(t, d, "cd "+v+" && setfattr -n user.k -v v a.txt 2>/dev/null || (echo x > a.txt && setfattr -n user.k -v v a.txt) && getfattr --only-values -n user.k a.txt | grep -qx v")
	// flock: a lock taken through the tree is seen through the tree.
	mustSh(t, d, "cd "+v+" && flock lockfile sleep 2 & sleep 0.5; cd "+v+" && ! flock -n lockfile true")

	// A container sees the files, and the tree sees the container's.
	if got := d.MustRun("run", "--rm", "-v", "data:/d", bb, "sh", "-c", "cat /d/cp/sub/b; echo inside > /d/from-container"); got != "b\n" {
		t.Errorf("the container reads %q", got)
	}
	if got := mustSh(t, d, "cat "+v+"/from-container"); got != "inside\n" {
		t.Errorf("the tree reads %q of the container's file", got)
	}

	// rmdir: not while it holds files, not while a container uses it.
	failSh(t, d, "rmdir "+v, "Directory not empty")
	d.MustRun("create", "--name", "user", "-v", "data:/d", bb, "true")
	failSh(t, d, "rmdir "+v, "Device or resource busy")
	if got := mustSh(t, d, "cat volumes/error"); !strings.Contains(got, "in use by container user") {
		t.Errorf("volumes/error while in use: %q", got)
	}
	d.MustRun("rm", "user")
	mustSh(t, d, "rm -rf "+v+"/* && rmdir "+v)
	if got := d.MustRun("volume", "ls", "-q"); got != "" {
		t.Errorf("volumes after rmdir: %q", got)
	}
	// Volumes made by the CLI show up.
	d.MustRun("volume", "create", "cli")
	if got := mustSh(t, d, "ls volumes"); got != "cli\nerror\n" {
		t.Errorf("ls volumes: %q", got)
	}
}

// TestTreeVolumesOfTheirOwner works in a volume as the tree's owner, an ordinary user,
// for whom the daemon (root) makes files: they are his, with the modes his umask asks
// for, and the kernel's permission rules hold.
func TestTreeVolumesOfTheirOwner(t *testing.T) {
	d, _ := treeDaemon(t)
	mustOwnerSh(t, d, "mkdir volumes/mine")
	v := "volumes/mine"
	if got := mustOwnerSh(t, d, "cd "+v+" && umask 002 && touch f && mkdir d && mkfifo p && ln -s f l && stat -c '%n %u:%g %a' . f d p && stat -c '%n %u:%g' l"); got !=
		fmt.Sprintf(". %[1]d:%[1]d 755\nf %[1]d:%[1]d 664\nd %[1]d:%[1]d 775\np %[1]d:%[1]d 664\nl %[1]d:%[1]d\n", treeOwner) {
		t.Errorf("files the owner made:\n%s", got)
	}
	// A set-group-ID directory hands its group down, as it does on disk.
	mustSh(t, d, "cd "+v+" && mkdir shared && chgrp 4321 shared && chmod 2777 shared")
	if got := mustOwnerSh(t, d, "cd "+v+"/shared && umask 002 && touch f && mkdir d && stat -c '%n %u:%g %A' f d"); got !=
		fmt.Sprintf("f %d:4321 -rw-rw-r--\nd %d:4321 drwxrwsr-x\n", treeOwner, treeOwner) {
		t.Errorf("files made in a set-group-ID directory:\n%s", got)
	}
	// The owner cannot make devices (root can), nor read what is not his.
	if r := ownerSh(t, d, "mknod "+v+"/mem c 1 1"); r.Code == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
		t.Errorf("mknod of a device as an ordinary user: exit %d, %s", r.Code, r.Stderr)
	}
	mustSh(t, d, "mknod "+v+"/null c 1 3 && echo secret > "+v+"/secret && chmod 600 "+v+"/secret")
	if r := ownerSh(t, d, "cat "+v+"/secret"); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("reading root's 0600 file as an ordinary user: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := ownerSh(t, d, "chown 0 "+v+"/f"); r.Code == 0 {
		t.Errorf("an ordinary user gave his file to root")
	}
	mustOwnerSh(t, d, "cd "+v+" && rm -r f d p l shared/* && ls -A | sort | tr '\n' ' ' | grep -qx 'null secret shared '")
}

// TestTreeVolumeEscapes swaps names in a volume's directory on disk (as a container
// using the volume could) right after the tree looked them up: what the daemon then does
// through the tree stays in the volume, and no host file outside it changes.
func TestTreeVolumeEscapes(t *testing.T) {
	d, _ := treeDaemon(t)
	d.MustRun("volume", "create", "x")
	var vols []struct{ Mountpoint string }
	if err := json.Unmarshal([]byte(d.MustRun("volume", "inspect", "x")), &vols); err != nil || len(vols) != 1 {
		t.Fatalf("volume inspect: %v %v", vols, err)
	}
	mp, v := vols[0].Mountpoint, "volumes/x"
	host := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(host, []byte("host data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("dutchman-escape-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		for _, p := range []string{"/" + name, "/" + name + ".dir", "/" + name + ".lnk"} {
			os.RemoveAll(p)
		}
	})
	swapFile := "echo data > " + v + "/f && stat " + v + "/f >/dev/null && rm " + mp + "/f && ln -s " + host + " " + mp + "/f && "
	for _, op := range []string{"chmod 666 " + v + "/f", "truncate -s 0 " + v + "/f", "setfattr -n user.x -v 1 " + v + "/f",
		"chown 1234 " + v + "/f", "touch -d 2001-01-01 " + v + "/f", "cat " + v + "/f", "echo more >> " + v + "/f"} {
		sh(t, d, swapFile+op)
		sh(t, d, "rm -f "+v+"/f")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(host, &st); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(host)
	if st.Mode&0o7777 != 0o600 || st.Uid != 0 || string(data) != "host data\n" || time.Unix(st.Mtim.Unix()).Year() < 2020 {
		t.Errorf("a host file changed through a swapped name in a volume: mode %o, uid %d, mtime %v, %q", st.Mode&0o7777, st.Uid, time.Unix(st.Mtim.Unix()), data)
	}
	if x := sh(t, d, "getfattr --only-values -n user.x "+host); x.Code == 0 {
		t.Errorf("a host file got an extended attribute through a volume: %q", x.Stdout)
	}
	// A directory swapped for a link to /: what is made through it stays in the volume.
	sh(t, d, "mkdir "+v+"/d && ls "+v+"/d && rmdir "+mp+"/d && ln -s / "+mp+"/d && touch "+v+"/d/"+name+"; mkdir "+v+"/d/"+name+".dir; ln -s x "+v+"/d/"+name+".lnk")
	for _, p := range []string{"/" + name, "/" + name + ".dir", "/" + name + ".lnk"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a file made through a volume landed on the host at %s", p)
		}
	}
}

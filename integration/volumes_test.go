//go:build linux

package integration

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// TestVolumeKeepsDataAcrossContainers keeps a database-like file in a named volume
// while its containers are removed and made again.
func TestVolumeKeepsDataAcrossContainers(t *testing.T) {
	d, bb := busyboxDaemon(t)
	if got := d.MustRun("volume", "create", "--label", "app=db", "db"); got != "db\n" {
		t.Fatalf("volume create: %q", got)
	}
	d.MustRun("run", "--rm", "-v", "db:/var/lib/db", bb, "sh", "-c", "echo row1 >> /var/lib/db/table")
	d.MustRun("run", "--name", "second", "-v", "db:/var/lib/db", bb, "sh", "-c", "echo row2 >> /var/lib/db/table")
	d.MustRun("rm", "second")
	if got := d.MustRun("run", "--rm", "-v", "db:/var/lib/db", bb, "cat", "/var/lib/db/table"); got != "row1\nrow2\n" {
		t.Errorf("the volume after two containers went: %q", got)
	}
	var vs []struct {
		Name       string            `json:"name"`
		Driver     string            `json:"driver"`
		Mountpoint string            `json:"mountpoint"`
		Labels     map[string]string `json:"labels"`
	}
	if err := json.Unmarshal([]byte(d.MustRun("volume", "inspect", "db")), &vs); err != nil || len(vs) != 1 {
		t.Fatalf("volume inspect: %v %+v", err, vs)
	}
	if vs[0].Driver != "local" || vs[0].Labels["app"] != "db" {
		t.Errorf("volume inspect: %+v", vs[0])
	}
	if b, err := os.ReadFile(filepath.Join(vs[0].Mountpoint, "table")); err != nil || string(b) != "row1\nrow2\n" {
		t.Errorf("the volume's data on the host: %q, %v", b, err)
	}
	// A second create of the same name is the same volume, as in Docker.
	d.MustRun("volume", "create", "db")
	if got := d.MustRun("volume", "ls", "-q"); got != "db\n" {
		t.Errorf("volume ls -q: %q", got)
	}
}

func TestVolumeSharedAndReadOnly(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "a", "-v", "shared:/s", bb, "sh", "-c", sleeper)
	d.MustRun("run", "-d", "--name", "b", "-v", "shared:/s:ro", bb, "sh", "-c", sleeper)
	d.MustRun("exec", "a", "sh", "-c", "echo from-a > /s/f")
	if got := d.MustRun("exec", "b", "cat", "/s/f"); got != "from-a\n" {
		t.Errorf("b reads %q from the shared volume", got)
	}
	r := d.Run("exec", "b", "sh", "-c", "echo x > /s/g")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Errorf("a write to a read-only mount: exit %d, %q", r.Code, r.Stderr)
	}
	// Removal is refused while any container uses the volume, naming them.
	r = d.Run("volume", "rm", "shared")
	if r.Code == 0 || !strings.Contains(r.Stderr, "in use by container a, b") {
		t.Errorf("volume rm while in use: exit %d, %q", r.Code, r.Stderr)
	}
	if got := d.MustRun("volume", "ls"); !regexp.MustCompile(`local +shared +a,b`).MatchString(got) {
		t.Errorf("volume ls:\n%s", got)
	}
	d.MustRun("rm", "-f", "a", "b")
	d.MustRun("volume", "rm", "shared")
	if got := d.MustRun("volume", "ls", "-q"); got != "" {
		t.Errorf("volumes after rm: %q", got)
	}
}

func TestBindMountsAndTmpfs(t *testing.T) {
	d, bb := busyboxDaemon(t)
	proj := filepath.Join(d.Dir, "project")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	d.MustRun("run", "-d", "--name", "dev", "-v", proj+":/src", "--tmpfs", "/scratch:rw,noexec,nosuid,size=1m", bb, "sh", "-c", sleeper)
	// Host edits are seen inside at once, and the reverse.
	if err := os.WriteFile(filepath.Join(proj, "main.c"), []byte("int main;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := d.MustRun("exec", "dev", "cat", "/src/main.c"); got != "int main;\n" {
		t.Errorf("a host file in the bind mount reads %q inside", got)
	}
	d.MustRun("exec", "dev", "sh", "-c", "echo built > /src/out")
	if b, _ := os.ReadFile(filepath.Join(proj, "out")); string(b) != "built\n" {
		t.Errorf("a file written inside reads %q on the host", b)
	}
	// The tmpfs has its size.
	if got := d.MustRun("exec", "dev", "sh", "-c", "grep ' /scratch ' /proc/mounts"); !strings.HasPrefix(got, "tmpfs /scratch tmpfs") || !strings.Contains(got, "size=1024k") {
		t.Errorf("the tmpfs mount: %q", got)
	}
	if r := d.Run("exec", "dev", "sh", "-c", "dd if=/dev/zero of=/scratch/big bs=1k count=2048"); r.Code == 0 {
		t.Errorf("2 MiB fit in a 1 MiB tmpfs")
	}
	var st struct {
		Mounts []struct {
			Type, Source, Target string
		} `json:"mounts"`
	}
	json.Unmarshal([]byte(d.MustRun("inspect", "dev")), &[]any{&st})
	if len(st.Mounts) != 2 || st.Mounts[0].Type != "bind" || st.Mounts[0].Source != proj || st.Mounts[1].Type != "tmpfs" {
		t.Errorf("inspect mounts: %+v", st.Mounts)
	}

	// Bad mounts: exit 125, a clear message, nothing made.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mount", "type=bind,source=" + filepath.Join(d.Dir, "missing") + ",target=/x"}, "bind source path does not exist"},
		{[]string{"-v", "rel/path:/x"}, ""},
		{[]string{"-v", "../x:/x"}, ""},
		{[]string{"-v", "vol:relative"}, ""},
		{[]string{"-v", "vol:/proc"}, "/proc"},
		{[]string{"-v", "vol:/sys/fs"}, "/sys"},
		{[]string{"-v", "vol:/"}, ""},
		{[]string{"--mount", "type=nfs,target=/x"}, ""},
		{[]string{"--tmpfs", "/t:size=lots"}, ""},
		{[]string{"-v", "a:/x", "-v", "b:/x"}, "duplicate mount point"},
	} {
		r := d.Run(append(append([]string{"run", "--rm"}, c.args...), bb, "true")...)
		if r.Code != 125 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("run %q: exit %d, %q; want 125 saying %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
	if got := d.MustRun("volume", "ls", "-q"); got != "" {
		t.Errorf("bad mounts left volumes behind: %q", got)
	}
}

func TestVolumeNamesAndCopyUp(t *testing.T) {
	d, bb := busyboxDaemon(t)
	for _, name := range []string{"../x", "a/b", ".hidden", strings.Repeat("v", 300), "with space"} {
		if r := d.Run("volume", "create", name); r.Code == 0 || !strings.Contains(r.Stderr, "invalid") {
			t.Errorf("volume create %q: exit %d, %q", name, r.Code, r.Stderr)
		}
	}
	// A new volume over a directory of the image starts with the image's content.
	d.MustRun("run", "--rm", "-v", "etc:/etc", bb, "sh", "-c", "echo added >> /etc/passwd")
	got := d.MustRun("run", "--rm", "-v", "etc:/etc", bb, "sh", "-c", "grep -c root /etc/passwd; tail -n 1 /etc/passwd")
	if got != "1\nadded\n" {
		t.Errorf("a volume copied up from the image, then kept: %q", got)
	}
	// nocopy: empty.
	if got := d.MustRun("run", "--rm", "--mount", "type=volume,source=bare,target=/etc,volume-nocopy", bb, "ls", "-A", "/etc"); got != "" {
		t.Errorf("a nocopy volume holds %q", got)
	}
	// Anonymous volumes go with rm -v, and with --rm.
	d.MustRun("create", "--name", "anon", "-v", "/data", bb, "true")
	vols := d.MustRun("volume", "ls", "-q")
	if !regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).MatchString(vols) {
		t.Fatalf("no anonymous volume: %q", vols)
	}
	// A container that names an anonymous volume (to back it up, say) does not take it
	// with it: only the volumes made for a container go with it.
	hex := regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).FindString(vols)
	d.MustRun("run", "--rm", "-v", hex+":/backup", bb, "ls", "/backup")
	if got := d.MustRun("volume", "ls", "-q"); !strings.Contains(got, hex) {
		t.Fatalf("run --rm naming an anonymous volume removed it: %q", got)
	}
	d.MustRun("rm", "-v", "anon")
	d.MustRun("run", "--rm", "-v", "/data", bb, "true")
	if got := d.MustRun("volume", "ls", "-q"); got != "bare\netc\n" {
		t.Errorf("volumes after rm -v and --rm: %q", got)
	}
	if got := d.MustRun("volume", "prune", "-a"); got != "bare\netc\n" {
		t.Errorf("volume prune -a: %q", got)
	}
}

// TestImageVolumesFollowARecreatedContainer: an image's VOLUME path gets an anonymous
// volume, filled from the image; a spec saved again with a change recreates the
// container, which keeps that volume (as Compose does), so a database's data stays.
func TestImageVolumesFollowARecreatedContainer(t *testing.T) {
	reg := harness.StartRegistry(t)
	img := harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t)),
		harness.Layer(t, harness.Tar(harness.Entry{Name: "data/", Type: tar.TypeDir}, harness.Entry{Name: "data/seed", Body: "seed\n"})))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Volumes = map[string]struct{}{"/data": {}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("test/withvolume:v1")
	harness.Push(t, ref, img)

	d, _ := treeDaemon(t)
	d.MustRun("pull", "-q", ref)
	spec := func(word string) string {
		return "image: " + ref + "\ncommand: [sh, -c, \"echo " + word + " >> /data/log; cat /data/seed /data/log\"]\n"
	}
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(d.Dir, "db.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		mustSh(t, d, "cp ../db.yaml containers/db.yaml")
	}
	write(spec("one"))
	d.MustRun("start", "-a", "db")
	vols := d.MustRun("volume", "ls", "-q")
	write(spec("two"))
	if got := d.MustRun("start", "-a", "db"); got != "seed\none\ntwo\n" {
		t.Errorf("the recreated container's /data: %q; want the seed and both runs' lines", got)
	}
	if got := d.MustRun("volume", "ls", "-q"); got != vols {
		t.Errorf("volumes after a recreate: %q; before: %q", got, vols)
	}
}

// TestMountTargetsThroughLinks mounts on paths that are symbolic links in the image: one
// that leads to /proc (or out of the root, which the root keeps to /) is refused, one
// that leads elsewhere in the image mounts there.
func TestMountTargetsThroughLinks(t *testing.T) {
	reg := harness.StartRegistry(t)
	img := harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t)),
		harness.Layer(t, harness.Tar(
			harness.Entry{Name: "kernel", Type: tar.TypeSymlink, Link: "/proc/sys"},
			harness.Entry{Name: "up", Type: tar.TypeSymlink, Link: "../../../.."},
			harness.Entry{Name: "real/", Type: tar.TypeDir},
			harness.Entry{Name: "data", Type: tar.TypeSymlink, Link: "real"})))
	ref := reg.Ref("test/links:v1")
	harness.Push(t, ref, img)
	d := harness.StartDaemon(t)
	d.MustRun("pull", "-q", ref)
	for _, c := range []struct{ mount, words string }{
		{"v:/kernel", "mount target /kernel leads to /proc/sys through a symbolic link in the image"},
		{"v:/up", "mount target /up leads to / through a symbolic link in the image"},
		{"/kernel/x", "mount target /kernel/x leads to /proc/sys/x"},
	} {
		if r := d.Run("run", "--rm", "-v", c.mount, ref, "true"); r.Code != 125 || !strings.Contains(r.Stderr, c.words) {
			t.Errorf("-v %s: exit %d, %s; want 125 saying %q", c.mount, r.Code, r.Stderr, c.words)
		}
	}
	if got := d.MustRun("run", "--rm", "--tmpfs", "/data", ref, "sh", "-c", "grep -c ' /real tmpfs ' /proc/mounts"); got != "1\n" {
		t.Errorf("a tmpfs on a link to /real: %q", got)
	}
	if got := d.MustRun("ps", "-aq"); got != "" {
		t.Errorf("refused runs left containers: %q", got)
	}
}

// TestTreeSpecVolumes names volumes and tmpfs mounts in a spec file saved in the tree.
func TestTreeSpecVolumes(t *testing.T) {
	d, bb := treeDaemon(t)
	spec := func(word string) string {
		return "image: " + bb + "\ncommand: [sh, -c, \"echo " + word + " >> /d/log; cat /d/log; grep -c ' /scratch tmpfs' /proc/mounts\"]\n" +
			"volumes: [\"data:/d\"]\ntmpfs: [/scratch]\n"
	}
	save := func(body string) harness.Result {
		if err := os.WriteFile(filepath.Join(d.Dir, "app.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return sh(t, d, "cp ../app.yaml containers/app.yaml")
	}
	if r := save(spec("one")); r.Code != 0 {
		t.Fatalf("saving a spec with volumes: %q", r.Stderr)
	}
	if got := d.MustRun("start", "-a", "app"); got != "one\n1\n" {
		t.Errorf("first run: %q", got)
	}
	if r := save(spec("two")); r.Code != 0 {
		t.Fatalf("saving a changed spec: %q", r.Stderr)
	}
	if got := d.MustRun("start", "-a", "app"); got != "one\ntwo\n1\n" {
		t.Errorf("the recreated container's volume: %q", got)
	}
	if got := mustSh(t, d, "cat containers/app/status.json"); !strings.Contains(got, `"source": "data"`) || !strings.Contains(got, `"target": "/scratch"`) {
		t.Errorf("status.json lacks the mounts:\n%s", got)
	}
	// A spec in the tree of a user other than root binds no host path.
	if r := save("image: " + bb + "\nvolumes: [\"/etc:/host\"]\n"); r.Code == 0 || !strings.Contains(mustSh(t, d, "cat containers/app/error"), "line 2: volumes: bind mount of /etc: a spec file in the tree of a user other than root binds only directories of the tree") {
		t.Errorf("a spec binding /etc: exit %d", r.Code)
	}
	// A container the CLI makes with a volume shows it in its spec file.
	d.MustRun("create", "--name", "cli", "-v", "cache:/cache:ro", bb, "true")
	if got := mustSh(t, d, "cat containers/cli.yaml"); !strings.Contains(got, "volumes:\n  - cache:/cache:ro\n") {
		t.Errorf("the CLI container's spec file:\n%s", got)
	}
}

// TestTreeSpecBinds binds directories of the tree into a container from its spec file,
// as its owner (an ordinary user) keeps them: a site beside the spec.
func TestTreeSpecBinds(t *testing.T) {
	d, bb := treeDaemon(t)
	mustOwnerSh(t, d, "mkdir containers/site containers/out && echo hello > containers/site/index.html")
	mustOwnerSh(t, d, `printf 'image: `+bb+`\ncommand: [sleep, "300"]\nvolumes: ["./site:/srv:ro", "./out:/out"]\n' > containers/web.yaml`)
	d.MustRun("start", "web")
	if got := d.MustRun("exec", "web", "cat", "/srv/index.html"); got != "hello\n" {
		t.Errorf("the container reads %q", got)
	}
	// Edits in the tree show inside at once; the read-only bind refuses writes; what
	// the container writes in the other shows in the tree.
	mustOwnerSh(t, d, "echo changed > containers/site/index.html")
	if got := d.MustRun("exec", "web", "cat", "/srv/index.html"); got != "changed\n" {
		t.Errorf("after an edit in the tree the container reads %q", got)
	}
	if r := d.Run("exec", "web", "sh", "-c", "echo x > /srv/new"); r.Code == 0 {
		t.Errorf("a read-only bind took a write")
	}
	d.MustRun("exec", "web", "sh", "-c", "echo from-container > /out/f")
	if got := mustOwnerSh(t, d, "cat containers/out/f"); got != "from-container\n" {
		t.Errorf("the tree reads %q of the container's file", got)
	}
	if got := mustSh(t, d, "cat containers/web/status.json"); !strings.Contains(got, `"source": "/containers/site"`) || !strings.Contains(got, `"in_tree": true`) {
		t.Errorf("status.json of the binds:\n%s", got)
	}
	if got := mustSh(t, d, "cat containers/web/spec.yaml"); !strings.Contains(got, "./site:/srv:ro") {
		t.Errorf("spec.yaml of the binds:\n%s", got)
	}
	// Nothing of the start stays mounted on the host.
	if m := harness.Mounts(filepath.Join(d.DataRoot, "binds")); len(m) > 0 {
		t.Errorf("staged binds left mounted: %v", m)
	}
	// A source swapped for a link out of the tree after the spec was saved leads
	// nowhere at the next start.
	d.MustRun("kill", "web")
	d.MustRun("wait", "web")
	mustOwnerSh(t, d, "mv containers/site containers/site.old && ln -s /etc containers/site")
	if r := d.Run("start", "web"); r.Code == 0 || !strings.Contains(r.Stderr, "bind source /containers/site in the tree: no such file or directory") {
		t.Errorf("start with a source swapped for a link to /etc: exit %d, %s", r.Code, r.Stderr)
	}

	// A source missing, or a link that leads out of the tree (resolved in the tree, it
	// leads to a directory the tree does not have), fails with the line.
	save := func(body string) harness.Result {
		// cp, which reports a failed close (bash's redirection does not).
		return ownerSh(t, d, "f=$(mktemp) && printf '"+body+"' > $f && cp $f containers/bad.yaml; r=$?; rm $f; exit $r")
	}
	// Nor may it use a volume whose filesystem root chose (a host directory bound).
	d.MustRun("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc", "rootvol")
	if r := save("image: " + bb + "\\nvolumes: [\"rootvol:/x\"]\\n"); r.Code == 0 || !strings.Contains(mustSh(t, d, "cat events | tail -1"), "volume rootvol mounts a filesystem root chose") {
		t.Errorf("a spec using root's bound volume: exit %d, %s", r.Code, mustSh(t, d, "cat events | tail -1"))
	}
	for _, c := range []struct{ source, words string }{
		{"./missing", "bind source /containers/missing is not in the tree"},
		{"./evil", "bind source /containers/evil is not in the tree"},
		{"./evil/passwd", "bind source /containers/evil/passwd is not in the tree"},
		{"../../../../../etc", "bind source /etc is not in the tree"},
	} {
		mustOwnerSh(t, d, "ln -sfn /etc containers/evil")
		if r := save("image: " + bb + "\\nvolumes: [\"" + c.source + ":/x\"]\\n"); r.Code == 0 || !strings.Contains(r.Stderr+mustSh(t, d, "cat events | tail -1"), c.words) {
			t.Errorf("a bind of %s: exit %d, %s; want %q", c.source, r.Code, mustSh(t, d, "cat events | tail -1"), c.words)
		}
	}
}

// TestVolumeDriverOptions makes volumes the local driver mounts, as Docker's does: a
// tmpfs, and a host directory bound. They are mounted while a container that uses them
// runs, and removing one never touches what it binds.
func TestVolumeDriverOptions(t *testing.T) {
	d, bb := busyboxDaemon(t)
	mountpoint := func(name string) string {
		var vs []struct{ Mountpoint string }
		if err := json.Unmarshal([]byte(d.MustRun("volume", "inspect", name)), &vs); err != nil || len(vs) != 1 {
			t.Fatalf("volume inspect %s: %v", name, err)
		}
		return vs[0].Mountpoint
	}
	d.MustRun("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=8m,uid=1234,mode=0750", "scratch")
	if got := d.MustRun("run", "--rm", "-v", "scratch:/s", bb, "sh", "-c", "grep -c ' /s tmpfs ' /proc/mounts; df -k /s | tail -1 | awk '{print $2}'; stat -c '%u %a' /s"); got != "1\n8192\n1234 750\n" {
		t.Errorf("a tmpfs volume seen inside: %q", got)
	}
	mp := mountpoint("scratch")
	if m := harness.Mounts(mp); len(m) > 0 {
		t.Errorf("the tmpfs stayed mounted after its only user went: %v", m)
	}
	// Two users: mounted while either runs, and they share it.
	d.MustRun("run", "-d", "--name", "keeper", "-v", "scratch:/s", bb, "sleep", "300")
	d.MustRun("run", "--rm", "-v", "scratch:/s", bb, "sh", "-c", "echo shared > /s/f")
	if got := d.MustRun("exec", "keeper", "cat", "/s/f"); got != "shared\n" {
		t.Errorf("the second user wrote %q", got)
	}
	if len(harness.Mounts(mp)) == 0 {
		t.Errorf("the tmpfs went while keeper still runs")
	}
	// A daemon killed and started again leaves the filesystem of a volume in use
	// mounted, and unmounts it when its user goes.
	d.Kill()
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if got := d.MustRun("exec", "keeper", "cat", "/s/f"); got != "shared\n" || len(harness.Mounts(mp)) == 0 {
		t.Errorf("after a restart of the daemon keeper reads %q, mounts %v", got, harness.Mounts(mp))
	}
	d.MustRun("rm", "-f", "keeper")
	eventually(t, 10*time.Second, func() string {
		if m := harness.Mounts(mp); len(m) > 0 {
			return fmt.Sprintf("the tmpfs stays mounted after its last user went: %v", m)
		}
		return ""
	})

	// A host directory bound as a volume.
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "keep"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustRun("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device="+host, "hostdir")
	if got := d.MustRun("run", "--rm", "-v", "hostdir:/h", bb, "sh", "-c", "cat /h/keep; echo inside > /h/new"); got != "host file\n" {
		t.Errorf("a bound host directory seen inside: %q", got)
	}
	d.MustRun("volume", "rm", "hostdir")
	for _, f := range []string{"keep", "new"} {
		if _, err := os.Stat(filepath.Join(host, f)); err != nil {
			t.Errorf("removing the volume touched the directory it binds: %v", err)
		}
	}

	// Options that name no filesystem are refused; one that cannot be mounted fails the
	// start, saying what mount said.
	for _, args := range [][]string{{"-o", "type=tmpfs"}, {"-o", "device=/dev/null"}, {"-o", "size=1g"}} {
		if r := d.Run(append([]string{"volume", "create"}, append(args, "bad")...)...); r.Code == 0 || !strings.Contains(r.Stderr, "option") {
			t.Errorf("volume create %v: exit %d, %s", args, r.Code, r.Stderr)
		}
	}
	d.MustRun("volume", "create", "-o", "type=ext4", "-o", "device=/nonexistent-device", "broken")
	if r := d.Run("run", "--rm", "-v", "broken:/b", bb, "true"); r.Code == 0 || !strings.Contains(r.Stderr, "mount volume broken") {
		t.Errorf("a volume that cannot be mounted: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestVolumeRemovedWhileContainersAreMade races volume rm against containers being made
// with the volume: a volume about to be mounted is in use, so every run finds it.
func TestVolumeRemovedWhileContainersAreMade(t *testing.T) {
	d, bb := busyboxDaemon(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				d.Run("volume", "rm", "racy")
			}
		}
	}()
	errs := make(chan string, 12)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				if r := d.Run("run", "--rm", "-v", "racy:/d", bb, "sh", "-c", "echo x > /d/f"); r.Code != 0 {
					errs <- r.Stderr
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for e := range errs {
		t.Errorf("a run while the volume was being removed failed: %s", e)
	}
}

//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// The vm tests boot few VMs (each takes seconds under TCG): one daemon runs most of what
// a vm container must do, one container after the other.

// vmKernels is what the tests read of `dutchman kernel ls --format json`.
type vmKernel struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Default bool   `json:"default"`
}

func kernelList(t *testing.T, d *harness.Daemon) []vmKernel {
	t.Helper()
	var ks []vmKernel
	if err := json.Unmarshal([]byte(d.MustRun("kernel", "ls", "--format", "json")), &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// qemuOf lists the QEMU processes whose command line names s.
func qemuOf(s string) []string {
	out, _ := exec.Command("pgrep", "-af", "qemu-system").Output()
	var found []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && strings.Contains(l, s) {
			found = append(found, l)
		}
	}
	return found
}

// vmLogs are the shim's and the guest console's logs of container id, for a failure.
func vmLogs(d *harness.Daemon, id string) string {
	dir := filepath.Join(d.DataRoot, "runtime", "vm", "containers", id)
	shimLog, _ := os.ReadFile(filepath.Join(dir, "shim.log"))
	console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	return fmt.Sprintf("shim.log:\n%s\nconsole.log:\n%s", shimLog, console)
}

// TestVM runs vm containers from the CLI and the tree with a daemon that fetches its
// kernel from Debian's package at the first need: output and exit codes, logs, the
// shared root filesystem, a volume and a bind mount both ways, a published port, exec,
// a daemon killed with SIGKILL and started again, stop (SIGTERM reaches the process),
// kill, and a restart policy.
func TestVM(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t, harness.WithTree())
	bb := ims.Busybox
	d.MustRun("pull", "-q", bb)

	// The first vm container waits for its kernel: apt-get download, then the boot.
	// Its limits are the VM's size: 200 MiB of memory (less the kernel's share), 2 CPUs.
	res := d.Run("run", "--runtime", "vm", "--name", "once", "--memory", "200m", "--cpus", "1.5", bb, "sh", "-c",
		"echo hello from the vm; uname -r; cat /proc/1/comm; grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo; exit 3")
	if res.Code != 3 {
		t.Fatalf("run: exit code %d, want 3\nstdout: %s\nstderr: %s\ndaemon log: %s", res.Code, res.Stdout, res.Stderr, d.Log())
	}
	ks := kernelList(t, d)
	if len(ks) != 1 || !ks[0].Default || !strings.HasPrefix(ks[0].Source, "debian:linux-image-") {
		t.Fatalf("kernels after the first vm container: %+v", ks)
	}
	kernel := ks[0].Name
	if !strings.Contains(res.Stdout, "hello from the vm\n"+kernel+"\n") {
		t.Errorf("output %q: want the greeting and the guest kernel's release %s", res.Stdout, kernel)
	}
	// In the guest, PID 1 is the agent: the container's process is not init.
	if !strings.Contains(res.Stdout, "init\n") {
		t.Errorf("output %q: want PID 1 to be the agent (init)", res.Stdout)
	}
	var memKB, cpus int
	if _, err := fmt.Sscanf(res.Stdout[strings.Index(res.Stdout, "MemTotal:"):], "MemTotal: %d kB\n%d", &memKB, &cpus); err != nil ||
		memKB < 150<<10 || memKB > 200<<10 || cpus != 2 {
		t.Errorf("--memory 200m --cpus 1.5: MemTotal %d kB, %d CPUs (%v); want 150-200 MiB and 2", memKB, cpus, err)
	}
	if got := mustSh(t, d, "cat containers/once/logs"); !strings.Contains(got, "hello from the vm") {
		t.Errorf("containers/once/logs: %q", got)
	}
	if got := mustSh(t, d, "cat kernels/default; cat kernels/"+kernel+"/modules"); !strings.HasPrefix(got, kernel+"\n") || !strings.Contains(got, "virtiofs.ko") {
		t.Errorf("kernels/default and modules: %q", got)
	}
	if q := qemuOf(containerID(t, d, "once")); len(q) > 0 {
		t.Errorf("QEMU still runs after the container exited: %v", q)
	}

	// A long-running container from a spec file, with a volume, a bind mount and a
	// published port.
	d.MustRun("volume", "create", "vmdata")
	hostDir := filepath.Join(d.Dir, "shared")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "from-host"), []byte("written on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeHostPort(t)
	mustSh(t, d, fmt.Sprintf(`cat > containers/web.yaml <<'SPEC'
image: %s
runtime: vm
command: [sh, -c, "trap 'echo got TERM; exit 0' TERM; mkdir -p /www; echo hello from the vm > /www/index.html; httpd -p 80 -h /www; echo ready; while true; do sleep 0.2; done"]
ports: ["127.0.0.1:%d:80"]
volumes: ["vmdata:/data", "%s:/host"]
SPEC
echo start > containers/web/ctl`, bb, port, hostDir))
	if got := mustSh(t, d, "timeout 60 tail -f containers/web/logs | grep -m1 ready"); got != "ready\n" {
		t.Fatalf("tail -f containers/web/logs: %q", got)
	}
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || got != "hello from the vm\n" {
		t.Errorf("published port: %q %v", got, err)
	}
	// The guest's files are the container's rootfs/ on the host.
	if got := mustSh(t, d, "cat containers/web/rootfs/www/index.html"); got != "hello from the vm\n" {
		t.Errorf("rootfs/www/index.html: %q", got)
	}
	// The bind mount and the volume, both ways.
	if got := d.MustRun("exec", "web", "cat", "/host/from-host"); got != "written on the host\n" {
		t.Errorf("a host file through the bind mount: %q", got)
	}
	d.MustRun("exec", "web", "sh", "-c", "echo written in the vm > /host/from-guest; echo in the volume > /data/v")
	if b, err := os.ReadFile(filepath.Join(hostDir, "from-guest")); err != nil || string(b) != "written in the vm\n" {
		t.Errorf("a guest file through the bind mount: %q %v", b, err)
	}
	if got := mustSh(t, d, "cat volumes/vmdata/v && echo from the tree > volumes/vmdata/t"); got != "in the volume\n" {
		t.Errorf("volumes/vmdata/v: %q", got)
	}
	eventually(t, 10*time.Second, func() string {
		if got := d.Run("exec", "web", "cat", "/data/t"); got.Stdout != "from the tree\n" {
			return fmt.Sprintf("the volume's new file in the guest: %+v", got)
		}
		return ""
	})
	if r := d.Run("exec", "web", "sh", "-c", "echo out; echo err >&2; exit 5"); r.Code != 5 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("exec: %+v", r)
	}
	if r := d.Run("exec", "web", "no-such-command"); r.Code != 127 {
		t.Errorf("exec of a missing command: %+v, want exit code 127", r)
	}

	// exec with a terminal.
	ex := cliTerminal(t, d, 30, 100, "exec", "-it", "web", "sh")
	ex.Expect("/ # ", 30*time.Second)
	ex.Type("stty size; echo in-exec-$((6*7))\r")
	ex.Expect("30 100", 10*time.Second)
	ex.Expect("in-exec-42", 10*time.Second)
	ex.Type("exit 3\r")
	if code := ex.Wait(30 * time.Second); code != 3 {
		t.Errorf("exec -it web sh; exit 3: the CLI exited %d", code)
	}

	// A clean stop of the daemon while the VM runs: the tree unmounts at once (virtiofsd's
	// mount namespace holds no copy of it, which kept its FUSE connection alive and hung
	// the unmount), the VM stays, and the next daemon finds it again.
	id := containerID(t, d, "web")
	if err := d.Stop(); err != nil {
		t.Fatalf("the daemon's stop while a vm container runs: %v", err)
	}
	if q := qemuOf(id); len(q) != 1 {
		t.Fatalf("QEMU processes of web after the daemon stopped: %v", q)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}

	// The daemon goes without a word; the VM stays, and the daemon finds it again.
	d.Kill()
	if q := qemuOf(id); len(q) != 1 {
		t.Fatalf("QEMU processes of web after the daemon was killed: %v\n%s", q, vmLogs(d, id))
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if c := inspectContainer(t, d, "web"); c.State != "running" {
		t.Fatalf("web after the daemon's restart: %+v", c)
	}
	if got := d.MustRun("exec", "web", "cat", "/www/index.html"); got != "hello from the vm\n" {
		t.Errorf("exec after the daemon's restart: %q", got)
	}

	// stop: SIGTERM reaches the container's process, which ends cleanly.
	mustSh(t, d, "echo stop > containers/web/ctl")
	if c := inspectContainer(t, d, "web"); c.State != "stopped" || c.ExitCode != 0 {
		t.Errorf("web after stop: %+v", c)
	}
	if got := mustSh(t, d, "cat containers/web/logs"); !strings.Contains(got, "got TERM") {
		t.Errorf("logs after stop: %q", got)
	}
	if q := qemuOf(id); len(q) > 0 {
		t.Errorf("QEMU still runs after stop: %v", q)
	}
	// kill: SIGKILL, exit code 137.
	mustSh(t, d, "echo start > containers/web/ctl")
	mustSh(t, d, "timeout 60 tail -n0 -f containers/web/logs | grep -m1 ready")
	d.MustRun("kill", "web")
	eventually(t, 30*time.Second, func() string {
		if c := inspectContainer(t, d, "web"); c.State != "stopped" || c.ExitCode != 137 {
			return fmt.Sprintf("web after kill: %+v", c)
		}
		return ""
	})

	// A container with a terminal: run -it.
	term := cliTerminal(t, d, 37, 91, "run", "-it", "--rm", "--runtime", "vm", bb, "sh")
	term.Expect("/ # ", 60*time.Second)
	checkTerminal(t, term)
	term.Type("exit 4\r")
	if code := term.Wait(30 * time.Second); code != 4 {
		t.Errorf("run -it sh; exit 4: the CLI exited %d", code)
	}

	// A process the guest's OOM killer ends: exit 137 and OOMKilled, as with runc.
	// (A 128 MiB guest has about 50 MiB free; a buffer larger than its RAM would be
	// refused by malloc, not killed.)
	if r := d.Run("run", "--runtime", "vm", "--name", "hog", "--memory", "128m", bb, "dd", "if=/dev/zero", "of=/dev/null", "bs=80M", "count=1"); r.Code != 137 {
		t.Errorf("an 80 MiB buffer in a 128 MiB guest: %+v", r)
	}
	if c := inspectContainer(t, d, "hog"); !c.OOMKilled || c.ExitCode != 137 {
		t.Errorf("hog: %+v, want OOMKilled", c)
	}

	// A restart policy restarts the VM.
	d.MustRun("run", "-d", "--runtime", "vm", "--restart", "on-failure:1", "--name", "flaky", bb, "sh", "-c", "echo run; exit 1")
	eventually(t, 90*time.Second, func() string {
		if c := inspectContainer(t, d, "flaky"); c.State != "stopped" || c.RestartCount != 1 {
			return fmt.Sprintf("flaky: %+v", c)
		}
		return ""
	})
	if got := d.MustRun("logs", "flaky"); got != "run\nrun\n" {
		t.Errorf("logs of flaky: %q", got)
	}
}

// TestVMKernelArtifact publishes the Debian kernel as an OCI artifact in a registry
// (dutchman kernel push), and a daemon told to use it fetches it on the first vm
// container's start.
func TestVMKernelArtifact(t *testing.T) {
	_, ims := harness.SharedImages(t)
	reg := harness.StartRegistry(t)
	deb := harness.KernelDeb(t)
	ref := reg.Ref("kernels/cloud:6.1")
	pusher := harness.StartDaemon(t)
	out := pusher.MustRun("kernel", "push", "--from", deb, ref)
	if !strings.HasPrefix(out, ref+"@sha256:") {
		t.Fatalf("kernel push: %q", out)
	}
	// An image is not a kernel.
	if r := pusher.Run("kernel", "pull", ims.Busybox); r.Code == 0 || !strings.Contains(r.Stderr, "not a kernel artifact") {
		t.Errorf("kernel pull of an image: %+v", r)
	}

	d := harness.StartDaemon(t, harness.WithArgs("--vm-kernel", ref))
	if r := d.Run("run", "--rm", "--runtime", "vm", ims.Busybox, "uname", "-r"); r.Code != 0 || !strings.Contains(r.Stdout, "cloud-amd64") {
		t.Fatalf("run with the artifact's kernel: %+v\n%s", r, d.Log())
	}
	ks := kernelList(t, d)
	if len(ks) != 1 || !strings.HasPrefix(ks[0].Source, reg.Addr+"/kernels/cloud@sha256:") || !ks[0].Default {
		t.Errorf("kernels: %+v", ks)
	}
	d.MustRun("kernel", "rm", ks[0].Name)
	if ks := kernelList(t, d); len(ks) != 0 {
		t.Errorf("kernels after rm: %+v", ks)
	}
}

// TestVMVsock runs a vm container whose agent talks over vsock, which the runtime
// chooses where /dev/vhost-vsock exists.
func TestVMVsock(t *testing.T) {
	if _, err := os.Stat("/dev/vhost-vsock"); err != nil {
		t.Skipf("this machine has no /dev/vhost-vsock (%v): here the vm runtime talks to its agent over virtio-serial, which TestVM covers; this test runs the vsock transport where the device exists", err)
	}
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t, harness.WithArgs("--vm-kernel", harness.KernelDeb(t)))
	d.MustRun("run", "-d", "--runtime", "vm", "--name", "v", ims.Busybox, "sleep", "600")
	id := inspectContainer(t, d, "v").ID
	if q := qemuOf(id); len(q) != 1 || !strings.Contains(q[0], "vhost-vsock-device") || strings.Contains(q[0], "virtserialport") {
		t.Errorf("QEMU of a vm container where vsock is available: %v", q)
	}
	if got := d.MustRun("exec", "v", "echo", "over vsock"); got != "over vsock\n" {
		t.Errorf("exec: %q", got)
	}
	d.MustRun("rm", "-f", "v")
}

// TestVMErofsRoot runs a vm container whose root filesystem is a block device: its image
// as an erofs disk, its writes on a scratch disk of its own, kept across restarts and
// removed with it; its volume still comes through the share.
func TestVMErofsRoot(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t, harness.WithArgs("--vm-kernel", harness.KernelDeb(t), "--vm-rootfs", "erofs"))
	d.MustRun("run", "-d", "--runtime", "vm", "--name", "e", "-v", "edata:/data", ims.Busybox, "sh", "-c",
		"echo written in the guest > /etc/written; echo in the volume > /data/v; echo ready; while true; do sleep 1; done")
	c := inspectContainer(t, d, "e")
	eventually(t, 60*time.Second, func() string {
		if got := d.MustRun("logs", "e"); got != "ready\n" {
			return fmt.Sprintf("logs of e: %q", got)
		}
		return ""
	})
	if got := d.MustRun("exec", "e", "sh", "-c", "cat /etc/written; grep ' / ' /proc/mounts | cut -d' ' -f3"); got != "written in the guest\noverlay\n" {
		t.Errorf("the guest's root: %q", got)
	}
	var vol []struct {
		Mountpoint string `json:"mountpoint"`
	}
	if err := json.Unmarshal([]byte(d.MustRun("volume", "inspect", "edata")), &vol); err != nil || len(vol) != 1 {
		t.Fatalf("volume inspect: %v %v", vol, err)
	}
	if b, err := os.ReadFile(filepath.Join(vol[0].Mountpoint, "v")); err != nil || string(b) != "in the volume\n" {
		t.Errorf("the volume on the host: %q %v", b, err)
	}
	disks, _ := filepath.Glob(filepath.Join(d.DataRoot, "runtime", "vm", "erofs", "*.erofs"))
	scratch, _ := filepath.Glob(filepath.Join(d.DataRoot, "images", "rootfs", c.ID, "vm-scratch.ext4"))
	if len(disks) != 1 || len(scratch) != 1 {
		t.Fatalf("image disks %v, scratch disks %v", disks, scratch)
	}
	// The container's writes survive a restart: a file its command does not make again.
	d.MustRun("exec", "e", "sh", "-c", "echo kept > /etc/kept")
	d.MustRun("restart", "-t", "1", "e")
	if got := d.MustRun("exec", "e", "cat", "/etc/kept"); got != "kept\n" {
		t.Errorf("after a restart: %q", got)
	}
	d.MustRun("rm", "-f", "e")
	if _, err := os.Stat(scratch[0]); !os.IsNotExist(err) {
		t.Errorf("the scratch disk outlived its container: %v", err)
	}
	// The image's disk goes with the image.
	d.MustRun("rmi", ims.Busybox)
	if _, err := os.Stat(disks[0]); !os.IsNotExist(err) {
		t.Errorf("the erofs disk outlived its image: %v", err)
	}
}

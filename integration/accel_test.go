//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// The vm runtime on three kinds of host: without /dev/kvm (simulated: harness.WithoutKVM),
// with a /dev/kvm that opens but cannot run the guest (a nested KVM, as on the machines
// CI runs on), and with a working KVM. The tests here run on the host as it is and with
// KVM hidden; where the host's KVM works, the same tests check that it is used.

// engineInfo is what the tests read of `dutchman info --format json`.
type engineInfo struct {
	DefaultRuntime string `json:"defaultRuntime"`
	VM             *struct {
		Setting     string `json:"setting"`
		KVM         bool   `json:"kvm"`
		Accel       string `json:"accel"`
		CPU         string `json:"cpu"`
		Reason      string `json:"reason"`
		ProbeMillis int64  `json:"probeMillis"`
	} `json:"vm"`
}

func daemonInfo(t *testing.T, d *harness.Daemon) engineInfo {
	t.Helper()
	var info engineInfo
	if err := json.Unmarshal([]byte(d.MustRun("info", "--format", "json")), &info); err != nil || info.VM == nil {
		t.Fatalf("info: %+v %v", info, err)
	}
	return info
}

// engineEvent is an event of the daemon's events file.
type engineEvent struct {
	Type       string            `json:"type"`
	Action     string            `json:"action"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
}

// containerEvents are the events of container name with action.
func containerEvents(t *testing.T, d *harness.Daemon, name, action string) []engineEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(d.DataRoot, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []engineEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e engineEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "container" && e.Name == name && e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// kvmOpens tells whether this test process can open /dev/kvm, and why not.
func kvmOpens() (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, err.Error()
	}
	f.Close()
	return true, ""
}

// probes counts the KVM probes a daemon logged.
func probes(d *harness.Daemon) int { return strings.Count(d.Log(), `msg="KVM probed"`) }

// TestVMHostKinds runs what a new user runs first, with no runtime named, and a vm
// container, on this host as it is and on this host without KVM: `auto` picks a runtime
// that runs, `runtime: vm` runs (under TCG, saying why, where KVM cannot run the guest),
// and info says which accelerator the vm runtime has and why.
func TestVMHostKinds(t *testing.T) {
	t.Run("as-is", func(t *testing.T) { checkHostKind(t, false) })
	t.Run("without-kvm", func(t *testing.T) { checkHostKind(t, true) })
}

func checkHostKind(t *testing.T, hideKVM bool) {
	opts := []harness.DaemonOption{harness.WithArgs("--vm-kernel", harness.KernelDeb(t))}
	if hideKVM {
		opts = append(opts, harness.WithoutKVM())
	}
	d, bb := treeDaemon(t, opts...)
	kvmHere, why := kvmOpens()
	if d.HideKVM {
		kvmHere = false
	}

	// Before any kernel: nothing is probed yet, and auto is oci.
	info := daemonInfo(t, d)
	switch {
	case !kvmHere && (info.VM.Accel != "tcg" || !strings.Contains(info.VM.Reason, "/dev/kvm")):
		t.Errorf("info without a usable /dev/kvm (%s): %+v", why, *info.VM)
	case kvmHere && (info.VM.Accel != "unknown" || !strings.Contains(info.VM.Reason, "guest kernel")):
		t.Errorf("info before the first kernel: %+v", *info.VM)
	}
	if info.DefaultRuntime != "oci" {
		t.Errorf("default runtime before any probe: %q", info.DefaultRuntime)
	}
	if r := d.Run("run", "--rm", bb, "true"); r.Code != 0 {
		t.Fatalf("run --rm IMAGE true: %+v\n%s", r, d.Log())
	}

	// The first vm container: its kernel is fetched, KVM probed, and the VM boots.
	start := time.Now()
	if r := d.Run("run", "--runtime", "vm", "--name", "v", bb, "sh", "-c", "echo in the vm; uname -r"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "in the vm\n") {
		t.Fatalf("run --runtime vm: %+v\n%s", r, d.Log())
	}
	t.Logf("the first vm container (kernel fetched, KVM probed, the VM booted) ran in %s", time.Since(start).Round(time.Millisecond))

	info = daemonInfo(t, d)
	warnings := containerEvents(t, d, "v", "warning")
	t.Logf("vm accelerator: %+v", *info.VM)
	switch {
	case info.VM.KVM:
		// A working KVM: the guest used it, and auto picks vm.
		if info.VM.Accel != "kvm" || info.VM.CPU == "" || info.DefaultRuntime != "vm" || len(warnings) != 0 {
			t.Errorf("info where KVM runs the guest: %+v, default %q; warnings %v", *info.VM, info.DefaultRuntime, warnings)
		}
	default:
		if info.VM.Accel != "tcg" || info.DefaultRuntime != "oci" {
			t.Errorf("info where KVM cannot run the guest: %+v, default %q", *info.VM, info.DefaultRuntime)
		}
		// Why, in one line: no device, or what QEMU said when a guest was tried on it.
		want := "/dev/kvm"
		if kvmHere {
			want = "KVM cannot run the guest on this host: with -cpu host, "
		}
		if !strings.Contains(info.VM.Reason, want) || strings.Contains(info.VM.Reason, "\n") {
			t.Errorf("the reason for TCG: %q, want one line with %q", info.VM.Reason, want)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0].Attributes["message"], "TCG") ||
			!strings.Contains(warnings[0].Attributes["message"], info.VM.Reason) {
			t.Errorf("the vm container's warning events: %+v; want one saying why it is not KVM", warnings)
		}
	}
	// The tree's info says the same.
	tree := mustSh(t, d, "cat info")
	for _, line := range []string{"default_runtime: " + info.DefaultRuntime, "vm_accel: " + info.VM.Accel, "vm_accel_reason: " + info.VM.Reason} {
		if !strings.Contains(tree, line+"\n") {
			t.Errorf("info file %q: want the line %q", tree, line)
		}
	}

	// No runtime named, once KVM was probed: the CLI and a spec file in the tree.
	if r := d.Run("run", "--rm", bb, "true"); r.Code != 0 {
		t.Errorf("run --rm IMAGE true after the probe: %+v", r)
	}
	mustSh(t, d, fmt.Sprintf("printf 'image: %s\\ncommand: [sleep, \"600\"]\\n' > containers/web.yaml", bb))
	shUntil(t, d, "cat containers/web/state 2>/dev/null", "created\n")
	mustSh(t, d, "echo start > containers/web/ctl")
	if got := mustSh(t, d, "cat containers/web/state"); got != "running\n" {
		t.Errorf("web after start: %q", got)
	}
	var runtimes []struct {
		Runtime string `json:"runtime"`
	}
	if err := json.Unmarshal([]byte(d.MustRun("inspect", "web")), &runtimes); err != nil || len(runtimes) != 1 || runtimes[0].Runtime != info.DefaultRuntime {
		t.Errorf("web's runtime: %+v %v, want %s", runtimes, err, info.DefaultRuntime)
	}
	mustSh(t, d, "rm containers/web.yaml")

	// One probe, kept: a restarted daemon does not probe again.
	want := 0
	if kvmHere {
		want = 1
	}
	if n := probes(d); n != want {
		t.Errorf("the daemon probed KVM %d times, want %d", n, want)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if after := daemonInfo(t, d); after.VM.Accel != info.VM.Accel || after.VM.Reason != info.VM.Reason {
		t.Errorf("info after a restart: %+v, before %+v", *after.VM, *info.VM)
	}
	if n := probes(d); n != want {
		t.Errorf("after a restart the daemon has probed KVM %d times, want %d", n, want)
	}
}

// TestVMAccelSetting overrides the probe both ways with --vm-accel: tcg never uses KVM
// and says nothing of it; kvm on a host whose KVM cannot run the guest fails the start
// at once and clearly (in the CLI, the tree's error file and errno, and events), and
// uses KVM where it can.
func TestVMAccelSetting(t *testing.T) {
	_, ims := harness.SharedImages(t)
	bb := ims.Busybox
	deb := harness.KernelDeb(t)

	bad := harness.NewDaemon(t, harness.WithArgs("--vm-accel", "fast"))
	if err := bad.Start(); err == nil || !strings.Contains(err.Error(), `vm accelerator "fast": want auto, kvm or tcg`) {
		bad.Stop()
		t.Errorf("a daemon with --vm-accel fast: %v", err)
	}

	tcg := harness.StartDaemon(t, harness.WithArgs("--vm-kernel", deb, "--vm-accel", "tcg"))
	tcg.MustRun("pull", "-q", bb)
	tcg.MustRun("run", "-d", "--runtime", "vm", "--name", "t", bb, "sleep", "600")
	q := qemuOf(inspectContainer(t, tcg, "t").ID)
	if len(q) != 1 || !strings.Contains(q[0], "-accel tcg") || strings.Contains(q[0], "-cpu") {
		t.Errorf("QEMU under --vm-accel tcg: %v", q)
	}
	if info := daemonInfo(t, tcg); info.VM.Accel != "tcg" || info.VM.Reason != "--vm-accel tcg" || info.DefaultRuntime != "oci" {
		t.Errorf("info under --vm-accel tcg: %+v %q", *info.VM, info.DefaultRuntime)
	}
	if w := containerEvents(t, tcg, "t", "warning"); len(w) != 0 {
		t.Errorf("TCG asked for is no cause for a warning: %+v", w)
	}
	if n := probes(tcg); n != 0 {
		t.Errorf("--vm-accel tcg probed KVM %d times", n)
	}
	tcg.MustRun("rm", "-f", "t")
	tcg.Stop()

	d, _ := treeDaemon(t, harness.WithArgs("--vm-kernel", deb, "--vm-accel", "kvm"))
	start := time.Now()
	r := d.Run("run", "--rm", "--runtime", "vm", bb, "sh", "-c", "echo under kvm")
	took := time.Since(start)
	if info := daemonInfo(t, d); info.VM.KVM {
		if r.Code != 0 || r.Stdout != "under kvm\n" {
			t.Errorf("run under --vm-accel kvm where KVM runs the guest: %+v", r)
		}
		d.MustRun("run", "-d", "--runtime", "vm", "--name", "k", bb, "sleep", "600")
		if q := qemuOf(inspectContainer(t, d, "k").ID); len(q) != 1 || !strings.Contains(q[0], "-accel kvm") {
			t.Errorf("QEMU under --vm-accel kvm: %v", q)
		}
		return
	}
	// This host's KVM cannot run the guest: the start fails with why, bounded by the
	// probe (seconds), not the boot's two minutes.
	if r.Code != 125 || !strings.Contains(r.Stderr, "--vm-accel kvm, but ") {
		t.Fatalf("run under --vm-accel kvm where KVM cannot run the guest: %+v", r)
	}
	t.Logf("the refused start took %s: %s", took.Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	if took > 60*time.Second {
		t.Errorf("the refused start took %s", took)
	}
	mustSh(t, d, fmt.Sprintf("printf 'image: %s\\nruntime: vm\\ncommand: [\"true\"]\\n' > containers/k.yaml", bb))
	shUntil(t, d, "cat containers/k/state 2>/dev/null", "created\n")
	failSh(t, d, "echo start > containers/k/ctl", "Exec format error")
	if got := mustSh(t, d, "cat containers/k/error"); !strings.Contains(got, "--vm-accel kvm, but ") {
		t.Errorf("containers/k/error: %q", got)
	}
	if die := containerEvents(t, d, "k", "die"); len(die) != 1 || !strings.Contains(die[0].Attributes["error"], "--vm-accel kvm, but ") {
		t.Errorf("the die event of k: %+v", die)
	}
}

// TestVMStopsAtBoot boots a kernel QEMU cannot load: the start fails as soon as QEMU
// exits, with QEMU's own words, in the CLI, the tree (errno and error file) and events,
// and nothing is left running.
func TestVMStopsAtBoot(t *testing.T) {
	d, bb := treeDaemon(t, harness.WithArgs("--vm-kernel", harness.KernelDeb(t), "--vm-accel", "tcg"))
	kernel := strings.TrimSpace(d.MustRun("kernel", "pull", harness.KernelDeb(t)))
	// A kernel package of the same modules, whose kernel image is empty.
	pkg := filepath.Join(d.Dir, "bogus")
	release := kernel + "-empty"
	if err := os.MkdirAll(filepath.Join(pkg, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(pkg, "lib", "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "boot", "vmlinuz-"+release), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(d.DataRoot, "kernels", kernel, "modules"), filepath.Join(pkg, "lib", "modules", release)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := "Package: linux-image-empty\nVersion: 1\nArchitecture: amd64\nMaintainer: tests\nDescription: a kernel QEMU cannot load\n"
	if err := os.WriteFile(filepath.Join(pkg, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-deb", "--build", "--root-owner-group", pkg, pkg+".deb").CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v %s", err, out)
	}
	d.MustRun("kernel", "pull", pkg+".deb")
	d.MustRun("kernel", "default", release)

	const want = "the VM stopped: QEMU exited with status 1: qemu: could not load kernel"
	start := time.Now()
	r := d.Run("run", "--runtime", "vm", "--name", "b", bb, "true")
	took := time.Since(start)
	if r.Code != 125 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("run with a kernel QEMU cannot load: %+v; want exit 125 and %q", r, want)
	}
	t.Logf("the failed start took %s: %s", took.Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	// QEMU fails at once; the start waits for nothing after it (the agent's wait is 2 min).
	if took > 30*time.Second {
		t.Errorf("the failed start took %s", took)
	}
	if c := inspectContainer(t, d, "b"); c.State != "stopped" || !strings.Contains(c.Error, want) {
		t.Errorf("b after the failed start: %+v", c)
	}
	if q := qemuOf(inspectContainer(t, d, "b").ID); len(q) > 0 {
		t.Errorf("QEMU left running: %v", q)
	}

	mustSh(t, d, fmt.Sprintf("printf 'image: %s\\nruntime: vm\\ncommand: [\"true\"]\\n' > containers/b2.yaml", bb))
	shUntil(t, d, "cat containers/b2/state 2>/dev/null", "created\n")
	failSh(t, d, "echo start > containers/b2/ctl", "Exec format error")
	if got := mustSh(t, d, "cat containers/b2/error"); !strings.Contains(got, want) {
		t.Errorf("containers/b2/error: %q", got)
	}
	if die := containerEvents(t, d, "b2", "die"); len(die) != 1 || !strings.Contains(die[0].Attributes["error"], want) {
		t.Errorf("the die event of b2: %+v", die)
	}
}

// TestVMConcurrentStarts starts several vm containers at once (as compose does) on a
// daemon that has a kernel and no verdict on KVM yet: one probe serves them all, and the
// race detector (the daemon under test is built with it) finds nothing.
func TestVMConcurrentStarts(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	d.MustRun("pull", "-q", ims.Busybox)
	d.MustRun("kernel", "pull", harness.KernelDeb(t))
	names := []string{"c1", "c2", "c3"}
	var wg sync.WaitGroup
	results := make([]harness.Result, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.Run("run", "-d", "--runtime", "vm", "--memory", "128m", "--name", name, ims.Busybox, "sleep", "600")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Errorf("run -d %s: %+v", names[i], r)
		}
	}
	for _, name := range names {
		if got := d.Run("exec", name, "echo", name); got.Stdout != name+"\n" {
			t.Errorf("exec in %s: %+v\n%s", name, got, vmLogs(d, inspectContainer(t, d, name).ID))
		}
	}
	want := 0
	if ok, _ := kvmOpens(); ok && !d.HideKVM {
		want = 1
	}
	if n := probes(d); n != want {
		t.Errorf("%d KVM probes for %d containers started at once, want %d", n, len(names), want)
	}
	d.MustRun(append([]string{"rm", "-f"}, names...)...)
}

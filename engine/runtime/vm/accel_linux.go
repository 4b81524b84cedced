package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// A /dev/kvm that opens is not yet a KVM that runs our guest: a nested or paravirtual
// KVM may refuse the host CPU's features (QEMU aborts) or hang the guest kernel at boot.
// So KVM counts only once a probe has seen the guest run on it: the runtime boots the
// kernel and agent it would boot for a container, under KVM, and waits a few seconds for
// the agent's hello. The verdict holds for the host's boot, the guest kernel, the agent
// and QEMU's version it was made with, and is kept in the runtime's root.

// probeFile, in the runtime's root, keeps the last probe's verdict.
const probeFile = "kvm-probe.json"

// defaultProbeDeadline bounds a probe's wait for the agent's hello. Under KVM a guest
// answers in well under a second; one that hangs is given up on then.
const defaultProbeDeadline = 5 * time.Second

// probeCPUs are the CPU models a probe tries, in order: the host's (every feature it has,
// the fastest guest), then QEMU's default, for a KVM that refuses some of the host's.
var probeCPUs = []string{"host", ""}

func cpuName(cpu string) string {
	if cpu == "" {
		return "QEMU's default CPU"
	}
	return "-cpu " + cpu
}

// probeKey is what a verdict holds for.
type probeKey struct {
	BootID string `json:"bootID"`
	Kernel string `json:"kernel"`
	Agent  string `json:"agent"`
	QEMU   string `json:"qemu"`
}

// probe is a verdict on KVM.
type probe struct {
	probeKey
	// OK tells that the guest ran under KVM with the CPU model CPU ("" for QEMU's
	// default); Reason says otherwise why not, in QEMU's words where it had any.
	OK     bool          `json:"ok"`
	CPU    string        `json:"cpu,omitempty"`
	Reason string        `json:"reason,omitempty"`
	At     time.Time     `json:"at"`
	Took   time.Duration `json:"took"`
}

// choice is how a guest boots: under KVM with a CPU model, or under TCG, with why not
// KVM ("" when the setting asked for TCG).
type choice struct {
	kvm bool
	cpu string
	why string
}

// openKVM tells why /dev/kvm cannot be opened for reading and writing, or nil.
func (r *Runtime) openKVM() error {
	f, err := os.OpenFile(r.kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	f.Close()
	return nil
}

// choose decides how the next guest of kern boots, probing KVM first when there is no
// verdict for this host, kernel, agent and QEMU. Under the setting kvm, a host whose KVM
// cannot run the guest is an error.
func (r *Runtime) choose(ctx context.Context, kern *Kernel) (choice, error) {
	if r.accel == AccelTCG {
		return choice{}, nil
	}
	if err := r.openKVM(); err != nil {
		if r.accel == AccelKVM {
			return choice{}, errdefs.CannotRun(fmt.Errorf("--vm-accel kvm, but there is no usable KVM: %w", err))
		}
		return choice{why: "no usable /dev/kvm (" + err.Error() + ")"}, nil
	}
	p, err := r.probeKVM(ctx, kern)
	if err != nil {
		return choice{}, err
	}
	if p.OK {
		return choice{kvm: true, cpu: p.CPU}, nil
	}
	if r.accel == AccelKVM {
		return choice{}, errdefs.CannotRun(fmt.Errorf("--vm-accel kvm, but KVM cannot run the guest on this host: %s", p.Reason))
	}
	return choice{why: "KVM cannot run the guest on this host: " + p.Reason}, nil
}

// RunsKVM tells whether guests boot under KVM here, which makes the vm runtime the
// choice of "auto": the setting allows it and a probe saw the default kernel's guest run
// (probing now if there is no verdict yet). Without a kernel in the cache there is
// nothing to probe: false.
func (r *Runtime) RunsKVM(ctx context.Context) bool {
	if r.accel == AccelTCG || r.openKVM() != nil {
		return false
	}
	kern, err := r.kernels.Get("")
	if err != nil {
		return false
	}
	p, err := r.probeKVM(ctx, kern)
	return err == nil && p.OK
}

// ProbeSoon probes KVM in the background, if there is a default kernel and no verdict
// for it, so that the next vm or auto container need not wait for the probe. The
// daemon's start and a new default kernel call it.
func (r *Runtime) ProbeSoon() {
	if r.accel == AccelTCG || r.openKVM() != nil {
		return
	}
	go r.RunsKVM(r.ctx)
}

// key is what a verdict for kern must hold for now.
func (r *Runtime) key(kern *Kernel) (probeKey, error) {
	qemu, _, err := r.tools()
	if err != nil {
		return probeKey{}, err
	}
	sum, err := r.kernels.agentDigest()
	if err != nil {
		return probeKey{}, fmt.Errorf("the vm runtime needs the guest agent, dutchman-agent: %w", err)
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return probeKey{BootID: strings.TrimSpace(string(boot)), Kernel: kern.Name, Agent: sum, QEMU: r.qemuVersion(qemu)}, nil
}

// probeKVM returns the verdict for kern, probing first if there is none: one probe at a
// time, on the runtime's own context (a caller that goes stops waiting, not the probe).
func (r *Runtime) probeKVM(ctx context.Context, kern *Kernel) (*probe, error) {
	key, err := r.key(kern)
	if err != nil {
		return nil, err
	}
	qemu, _, err := r.tools()
	if err != nil {
		return nil, err
	}
	vmlinuz, initramfs, err := r.kernels.Boot(kern)
	if err != nil {
		return nil, err
	}
	for {
		r.probeMu.Lock()
		r.loadProbeLocked()
		if p := r.probed; p != nil && p.probeKey == key {
			r.probeMu.Unlock()
			return p, nil
		}
		ch := r.probing
		if ch == nil {
			if r.closed {
				r.probeMu.Unlock()
				return nil, errors.New("the vm runtime is closing")
			}
			ch = make(chan struct{})
			r.probing = ch
			r.probes.Add(1)
			go r.runProbe(key, qemu, vmlinuz, initramfs, ch)
		}
		r.probeMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runProbe probes KVM and records the verdict, then closes done.
func (r *Runtime) runProbe(key probeKey, qemu, vmlinuz, initramfs string, done chan struct{}) {
	defer r.probes.Done()
	p := r.probe(r.ctx, qemu, vmlinuz, initramfs)
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	if p != nil {
		p.probeKey = key
		r.probed = p
		if err := r.saveProbeLocked(p); err != nil {
			r.log.Warn("keep the KVM probe's verdict", "err", err)
		}
		r.log.Info("KVM probed", "ok", p.OK, "cpu", p.CPU, "reason", p.Reason, "took", p.Took.Round(time.Millisecond), "kernel", key.Kernel)
	}
	r.probing = nil
	close(done)
}

// probe boots the guest under KVM with each CPU model in turn, and says which ran it,
// or why none did. It returns nil if ctx ended first.
func (r *Runtime) probe(ctx context.Context, qemu, vmlinuz, initramfs string) *probe {
	start := time.Now()
	var reasons []string
	for _, cpu := range probeCPUs {
		err := r.bootProbe(ctx, qemu, vmlinuz, initramfs, cpu)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return &probe{OK: true, CPU: cpu, At: start.UTC(), Took: time.Since(start)}
		}
		reasons = append(reasons, "with "+cpuName(cpu)+", "+err.Error())
	}
	return &probe{Reason: strings.Join(reasons, "; "), At: start.UTC(), Took: time.Since(start)}
}

// bootProbe boots the guest under KVM with the CPU model cpu ("" for QEMU's default)
// and waits for its agent's hello: nil once it came, else what happened instead.
func (r *Runtime) bootProbe(ctx context.Context, qemu, vmlinuz, initramfs, cpu string) error {
	hostF, guestF, err := filePair("agent")
	if err != nil {
		return err
	}
	defer hostF.Close()
	defer guestF.Close()
	consoleOurs, consoleTheirs, err := filePair("console")
	if err != nil {
		return err
	}
	defer consoleTheirs.Close()
	console := newTail(4096)
	go func() {
		defer consoleOurs.Close()
		buf := make([]byte, 4096)
		for {
			n, err := consoleOurs.Read(buf)
			console.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	m := machine{
		name: "dutchman-kvm-probe", kvm: true, cpu: cpu, memoryMiB: MinMemoryMiB, cpus: 1,
		kernel: vmlinuz, initramfs: initramfs,
		cmdline: strings.Join(append(kernelParams(true), agent.ParamTransport+"=serial"), " "),
	}
	cmd := exec.Command(qemu, append(m.args(), serialArgs(agent.PortName)...)...)
	cmd.Dir = r.root
	cmd.ExtraFiles = []*os.File{guestF, consoleTheirs} // at agentFd and consoleFd
	stderr := newTail(4096)
	cmd.Stderr = stderr
	// QEMU dies with the daemon: its parent-death signal is bound to a thread that lives
	// as long as QEMU does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started, waited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(waited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start QEMU: %w", err)
	}
	guestF.Close()
	consoleTheirs.Close()
	defer func() {
		cmd.Process.Kill()
		<-waited
	}()
	conn, err := net.FileConn(hostF)
	if err != nil {
		return err
	}
	defer conn.Close()
	hello := make(chan error, 1)
	go func() {
		c, err := proto.Handshake(conn)
		if err == nil {
			c.Close()
		}
		hello <- err
	}()
	ended := func() error {
		return errors.New(qemuEnd(unix.WaitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)), stderr))
	}
	timer := time.NewTimer(r.probeDeadline)
	defer timer.Stop()
	select {
	case err := <-hello:
		if err == nil {
			return nil
		}
		// QEMU's end closes the channel: say how it ended.
		select {
		case <-waited:
			return ended()
		case <-time.After(time.Second):
		}
		return fmt.Errorf("the agent: %w", err)
	case <-waited:
		return ended()
	case <-timer.C:
		msg := fmt.Sprintf("no answer from the guest within %s", r.probeDeadline)
		if l := console.lines(1); len(l) > 0 {
			msg += fmt.Sprintf(" (its console's last line: %q)", l[0])
		}
		return errors.New(msg)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loadProbeLocked reads the kept verdict once.
func (r *Runtime) loadProbeLocked() {
	if r.probeLoaded {
		return
	}
	r.probeLoaded = true
	b, err := os.ReadFile(filepath.Join(r.root, probeFile))
	if err != nil {
		return
	}
	var p probe
	if json.Unmarshal(b, &p) == nil {
		r.probed = &p
	}
}

func (r *Runtime) saveProbeLocked(p *probe) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.root, "."+probeFile)
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.root, probeFile))
}

// AccelInfo says what the vm runtime boots guests with, from what it knows now: it
// never probes nor waits for a probe.
func (r *Runtime) AccelInfo() *AccelInfo {
	info := &AccelInfo{Setting: r.accel}
	if r.accel == AccelTCG {
		info.Accel, info.Reason = AccelNameTCG, "--vm-accel tcg"
		return info
	}
	if err := r.openKVM(); err != nil {
		info.Accel, info.Reason = AccelNameTCG, "no usable /dev/kvm ("+err.Error()+")"
		if r.accel == AccelKVM {
			info.Accel, info.Reason = AccelNameKVM, "--vm-accel kvm, but there is no usable KVM ("+err.Error()+"): vm containers cannot start"
		}
		return info
	}
	var key probeKey
	kern, err := r.kernels.Get("")
	if err == nil {
		key, err = r.key(kern)
	}
	r.probeMu.Lock()
	r.loadProbeLocked()
	p, probing := r.probed, r.probing != nil
	r.probeMu.Unlock()
	info.Accel = AccelNameUnknown
	switch {
	case probing:
		info.Reason = "KVM is being probed"
		return info
	case errors.Is(err, errdefs.ErrNotFound):
		info.Reason = "KVM is probed once there is a guest kernel: the first vm container fetches one"
		return info
	case err != nil:
		info.Reason = err.Error()
		return info
	case p == nil || p.probeKey != key:
		info.Reason = "KVM is probed at the next vm container's start"
		return info
	}
	at := p.At
	info.Probed, info.ProbeMillis = &at, p.Took.Milliseconds()
	switch {
	case p.OK:
		info.KVM, info.Accel, info.CPU = true, AccelNameKVM, p.CPU
		if p.CPU == "" {
			info.CPU = "default"
		}
	case r.accel == AccelKVM:
		info.Accel, info.Reason = AccelNameKVM, "--vm-accel kvm, but KVM cannot run the guest on this host: "+p.Reason+": vm containers cannot start"
	default:
		info.Accel, info.Reason = AccelNameTCG, "KVM cannot run the guest on this host: "+p.Reason
	}
	return info
}

// qemuVersion is the first line of `QEMU -version`, asked once per binary.
func (r *Runtime) qemuVersion(qemu string) string {
	r.toolsMu.Lock()
	defer r.toolsMu.Unlock()
	if r.qemuVer == "" || r.qemuVerOf != qemu {
		out, err := exec.Command(qemu, "-version").Output()
		if err != nil {
			return "unknown"
		}
		first, _, _ := strings.Cut(string(out), "\n")
		r.qemuVer, r.qemuVerOf = strings.TrimSpace(first), qemu
	}
	return r.qemuVer
}

package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/oci"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Guest memory: the default without a limit, and the least a guest boots with.
const (
	DefaultMemoryMiB = 512
	MinMemoryMiB     = 128
)

// Runtime runs each container in a VM of its own, under a shim like the oci runtime's:
// the shim runs QEMU (and virtiofsd), so containers outlive the daemon.
//
// Under its root directory, containers/<id>/ holds the shim's state (shim.json with the
// launch configuration, shim.log, exit.json), the guest's console.log, the container's
// hostname and hosts files, and the share's mount points while it runs.
type Runtime struct {
	root    string
	self    string
	logs    logs.Options
	log     *slog.Logger
	kernels *Kernels
	// rootfs is the root filesystem mode (RootfsVirtiofs or RootfsErofs).
	rootfs  string
	erofsMu sync.Mutex

	// toolsMu guards QEMU's and virtiofsd's paths, found at the first need, and QEMU's
	// version.
	toolsMu            sync.Mutex
	qemu, virtiofsd    string
	qemuVer, qemuVerOf string

	// accel is the accelerator setting (AccelAuto, AccelKVM, AccelTCG); kvmDevice is
	// /dev/kvm, and probeDeadline a KVM probe's wait for the agent (both other in tests).
	accel         string
	kvmDevice     string
	probeDeadline time.Duration
	// probeMu guards the verdict on KVM (read from probeFile at the first need), the
	// probe under way (probing is closed when it ends), and closed.
	probeMu     sync.Mutex
	probed      *probe
	probeLoaded bool
	probing     chan struct{}
	closed      bool
	// ctx ends with Close, which waits for the probes.
	ctx    context.Context
	cancel context.CancelFunc
	probes sync.WaitGroup
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithShim sets the binary run as `BINARY shim` and `BINARY vm-share`.
func WithShim(self string) Option {
	return func(r *Runtime) {
		if self != "" {
			r.self = self
		}
	}
}

// WithLogs caps containers' logs.
func WithLogs(o logs.Options) Option { return func(r *Runtime) { r.logs = o } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// WithRootfs sets how guests get their root filesystem: RootfsVirtiofs (the default) or
// RootfsErofs.
func WithRootfs(mode string) Option {
	return func(r *Runtime) {
		if mode != "" {
			r.rootfs = mode
		}
	}
}

// WithAccel sets the accelerator: AccelAuto (the default), AccelKVM or AccelTCG.
func WithAccel(setting string) Option {
	return func(r *Runtime) {
		if setting != "" {
			r.accel = setting
		}
	}
}

// New returns the vm runtime keeping its state under root and its kernels in kernels.
// QEMU and virtiofsd are looked for at the first start, so that a machine without them
// still runs oci containers.
func New(root string, kernels *Kernels, opts ...Option) (*Runtime, error) {
	r := &Runtime{root: root, kernels: kernels, log: slog.Default(), rootfs: RootfsVirtiofs,
		accel: AccelAuto, kvmDevice: "/dev/kvm", probeDeadline: defaultProbeDeadline}
	for _, o := range opts {
		o(r)
	}
	if err := CheckRootfsMode(r.rootfs); err != nil {
		return nil, err
	}
	if err := CheckAccel(r.accel); err != nil {
		return nil, err
	}
	if r.self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		r.self = self
	}
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o700); err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	kernels.setOnDefault(r.ProbeSoon)
	return r, nil
}

// Close stops a KVM probe under way (its QEMU is killed) and waits for it to end.
// Containers are left to their shims.
func (r *Runtime) Close() error {
	r.probeMu.Lock()
	r.closed = true
	r.probeMu.Unlock()
	r.cancel()
	r.probes.Wait()
	return nil
}

// Name is "vm".
func (r *Runtime) Name() string { return "vm" }

func (r *Runtime) dir(id string) string { return filepath.Join(r.root, "containers", id) }

// vsockUsable tells whether the host can give guests vsock devices.
func vsockUsable() bool {
	f, err := os.OpenFile("/dev/vhost-vsock", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// tools finds QEMU and virtiofsd.
func (r *Runtime) tools() (qemu, virtiofsd string, err error) {
	r.toolsMu.Lock()
	defer r.toolsMu.Unlock()
	if r.qemu == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return "", "", errdefs.Unavailable(errors.New("the vm runtime needs QEMU: apt-get install qemu-system-x86"))
		}
		r.qemu = p
	}
	if r.virtiofsd == "" {
		for _, p := range []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd"} {
			if _, err := os.Stat(p); err == nil {
				r.virtiofsd = p
				break
			}
		}
		if r.virtiofsd == "" {
			return "", "", errdefs.Unavailable(errors.New("the vm runtime needs virtiofsd: apt-get install qemu-system-common"))
		}
	}
	return r.qemu, r.virtiofsd, nil
}

// Create prepares the container's VM: its kernel (fetched on first need), its launch
// configuration, and its shim, which boots the VM when the container starts.
func (r *Runtime) Create(ctx context.Context, cfg *rt.Config, logDir string) (rt.Task, error) {
	qemu, virtiofsd, err := r.tools()
	if err != nil {
		return nil, err
	}
	kern, err := r.kernels.Ensure(ctx)
	if err != nil {
		return nil, err
	}
	vmlinuz, initramfs, err := r.kernels.Boot(kern)
	if err != nil {
		return nil, err
	}
	how, err := r.choose(ctx, kern)
	if err != nil {
		return nil, err
	}
	if !how.kvm && how.why != "" && cfg.Warn != nil {
		cfg.Warn("the VM runs under TCG, QEMU's emulator, which is slow: " + how.why)
	}
	dir := r.dir(cfg.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lc, err := r.launchConfig(cfg, dir, qemu, virtiofsd, how)
	if err != nil {
		return nil, err
	}
	lc.Kernel, lc.Initramfs = vmlinuz, initramfs
	if r.rootfs == RootfsErofs {
		if err := r.blockRoot(ctx, cfg, lc); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(lc)
	if err != nil {
		return nil, err
	}
	scfg := &shim.Config{ID: cfg.ID, LogDir: logDir, Logs: r.logs, Tty: cfg.Tty, Stdin: cfg.OpenStdin,
		ConsoleSize: cfg.ConsoleSize, Launcher: LauncherName, LauncherConfig: data}
	if err := shim.Spawn(ctx, r.self, dir, scfg); err != nil {
		return nil, err
	}
	return r.newTask(cfg.ID, cfg.Rootfs, 0, nil), nil
}

// launchConfig translates cfg into what the launcher boots: the OCI spec the oci
// runtime would use (user, environment, mounts, with Docker's defaults) becomes the
// agent's setup and process, and the binds become the share.
func (r *Runtime) launchConfig(cfg *rt.Config, dir, qemu, virtiofsd string, how choice) (*LaunchConfig, error) {
	if cfg.NetNS == "host" {
		return nil, errdefs.Invalid(errors.New("a vm container has a network of its own: it cannot use the host's (network_mode: host)"))
	}
	hostname := filepath.Join(dir, "hostname")
	if err := os.WriteFile(hostname, []byte(cfg.Hostname+"\n"), 0o644); err != nil {
		return nil, err
	}
	hosts := cfg.HostsFile
	if hosts == "" {
		hosts = filepath.Join(dir, "hosts")
		data := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + cfg.Hostname + "\n"
		if err := os.WriteFile(hosts, []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	spec, err := oci.Spec(cfg, oci.SpecOptions{HostnameFile: hostname, HostsFile: hosts, ResolvConf: cfg.ResolvConf})
	if err != nil {
		return nil, err
	}
	if spec.Process.Terminal && !cfg.Tty {
		return nil, errors.New("spec asks for a terminal the config does not")
	}
	mem := int64(DefaultMemoryMiB)
	if cfg.Memory > 0 {
		mem = max(MinMemoryMiB, (cfg.Memory+(1<<20)-1)>>20)
	}
	cpus := 1
	if cfg.CPUs > 0 {
		cpus = min(goruntime.NumCPU(), int(math.Ceil(cfg.CPUs)))
	}
	lc := &LaunchConfig{
		QEMU: qemu, Virtiofsd: virtiofsd, Self: r.self,
		MemoryMiB: mem, CPUs: cpus, KVM: how.kvm, CPU: how.cpu, NetNS: cfg.NetNS,
		Rootfs: cfg.Rootfs, Share: Share{Rootfs: cfg.Rootfs},
		Setup: proto.Setup{Root: agent.ShareDir + "/root", Hostname: cfg.Hostname},
	}
	params := append(kernelParams(how.kvm), agent.ParamShare+"=share")
	if vsockUsable() {
		lc.Vsock = &VsockConfig{CID: guestCID(cfg.ID), Port: agentVsockPort}
		params = append(params, agent.ParamTransport+"=vsock", agent.ParamVsockPort+"="+strconv.Itoa(agentVsockPort))
	} else {
		params = append(params, agent.ParamTransport+"=serial")
	}
	lc.Cmdline = strings.Join(params, " ")
	for i, m := range spec.Mounts {
		pm := proto.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options}
		if m.Type == "bind" {
			name := "m" + strconv.Itoa(i)
			lc.Share.Binds = append(lc.Share.Binds, ShareBind{Name: name, Source: m.Source, ReadOnly: slices.Contains(m.Options, "ro")})
			pm.Source = agent.ShareDir + "/" + name
		}
		lc.Setup.Mounts = append(lc.Setup.Mounts, pm)
	}
	lc.Process = processOf(spec.Process, proto.MainProcess)
	lc.Process.Stdin = cfg.OpenStdin
	return lc, nil
}

// processOf is the agent's description of an OCI process.
func processOf(p *specs.Process, id uint32) proto.Process {
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	return proto.Process{ID: id, Args: p.Args, Env: p.Env, Cwd: path.Clean(cwd), UID: p.User.UID, GID: p.User.GID,
		Groups: p.User.AdditionalGids, Terminal: p.Terminal}
}

// agentVsockPort is the port the agent listens on with vsock.
const agentVsockPort = 1024

// guestCID is a vsock context id for container id: above the reserved ones (0-2), from
// the id's first hex digits.
func guestCID(id string) uint32 {
	n, _ := strconv.ParseUint(id[:min(7, len(id))], 16, 32)
	return uint32(n) + 3
}

// hostTSCkHz is the host CPU's frequency in kHz, from /proc/cpuinfo, or 0.
func hostTSCkHz() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

// Describe returns the launch configuration of container cfg.ID: the shim's while the
// container exists, else the one Create would make (without fetching a kernel).
func (r *Runtime) Describe(ctx context.Context, cfg *rt.Config) ([]byte, error) {
	if data, err := os.ReadFile(filepath.Join(r.dir(cfg.ID), shim.ConfigFile)); err == nil {
		var sc shim.Config
		if err := json.Unmarshal(data, &sc); err == nil && len(sc.LauncherConfig) > 0 {
			return sc.LauncherConfig, nil
		}
	}
	qemu, virtiofsd, _ := r.tools()
	// The last verdict on KVM, without probing: a description never waits for a VM.
	var how choice
	r.probeMu.Lock()
	if p := r.probed; p != nil && p.OK && r.accel != AccelTCG {
		how = choice{kvm: true, cpu: p.CPU}
	}
	r.probeMu.Unlock()
	lc, err := r.launchConfig(cfg, r.dir(cfg.ID), qemu, virtiofsd, how)
	if err != nil {
		return nil, err
	}
	if kern, err := r.kernels.Get(""); err == nil {
		lc.Kernel = filepath.Join(r.kernels.dir(kern.Name), "vmlinuz")
	}
	return json.Marshal(lc)
}

// Load reconnects to the shim of container id, as the oci runtime does.
func (r *Runtime) Load(ctx context.Context, id, logDir string) (rt.Task, error) {
	dir := r.dir(id)
	data, err := os.ReadFile(filepath.Join(dir, shim.ConfigFile))
	if err != nil {
		return nil, errdefs.NotFound(fmt.Errorf("container %s has no runtime state: %w", id, err))
	}
	var sc shim.Config
	var lc LaunchConfig
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(sc.LauncherConfig, &lc); err != nil {
		return nil, err
	}
	client := shim.NewClient(dir)
	pid, exit, err := client.State(ctx)
	if err != nil {
		if !errors.Is(err, shim.ErrGone) {
			return nil, err
		}
		return r.newTask(id, lc.Rootfs, 0, lostExit(dir)), nil
	}
	if pid == 0 && exit == nil {
		client.Shutdown(ctx)
		return r.newTask(id, lc.Rootfs, 0, &rt.ExitStatus{Code: 128, At: nowUTC(),
			Error: "the daemon stopped before the container's VM started"}), nil
	}
	return r.newTask(id, lc.Rootfs, pid, exit), nil
}

// lostExit is the exit status of a container whose shim is gone: the one it recorded,
// or 255. QEMU and virtiofsd died with the shim (their parent-death signal).
func lostExit(dir string) *rt.ExitStatus {
	if st, err := shim.ReadExit(dir); err == nil {
		return st
	}
	return &rt.ExitStatus{Code: 255, Error: "the container's shim is gone (it was killed, or the machine restarted): its VM was stopped", At: nowUTC()}
}

// Delete removes the container's state. A shim whose container never started is told
// to go.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	dir := r.dir(id)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	client := shim.NewClient(dir)
	if _, exit, err := client.State(ctx); err == nil && exit == nil {
		client.Shutdown(ctx)
	}
	return os.RemoveAll(dir)
}

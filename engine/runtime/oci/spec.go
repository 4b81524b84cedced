//go:build linux

package oci

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// SpecOptions are what the runtime adds that the engine's Config does not say.
type SpecOptions struct {
	// CgroupsPath is the container's cgroup, e.g. "/dutchman/<id>" (cgroupfs driver: a
	// path under each hierarchy's root on cgroup v1, under the unified root on v2).
	CgroupsPath string
	// HostnameFile is the host path of a file bind-mounted at /etc/hostname ("" none).
	HostnameFile string
	// HostsFile is the host path of a file bind-mounted at /etc/hosts ("" none).
	HostsFile string
	// ResolvConf is the host path of a file bind-mounted at /etc/resolv.conf ("" none).
	ResolvConf string
}

// defaultPath is the PATH a process gets when neither the image nor the spec sets one:
// Docker's (system.DefaultPathEnv).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultCapabilities is Docker's default capability set (moby oci/caps.DefaultCapabilities).
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// maskedPaths hide kernel interfaces that leak host information or allow attacks on it;
// runc bind-mounts /dev/null over files and an empty read-only tmpfs over directories.
var maskedPaths = []string{
	"/proc/asound",
	"/proc/acpi",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// readonlyPaths are kernel interfaces the container may read but must not change: they
// are not namespaced, so writing them would change the host.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// deviceRule is an allowed device of the device cgroup; -1 is any major or minor.
type deviceRule struct {
	typ          string
	major, minor int64
	access       string
}

// allowedDevices are the devices a container may use after the deny-all rule: the ones
// runc creates in /dev (and Docker's default list), the terminal devices, and mknod of
// anything (using what was made is still denied unless listed).
var allowedDevices = []deviceRule{
	{"c", -1, -1, "m"},
	{"b", -1, -1, "m"},
	{"c", 1, 3, "rwm"},    // /dev/null
	{"c", 1, 5, "rwm"},    // /dev/zero
	{"c", 1, 7, "rwm"},    // /dev/full
	{"c", 1, 8, "rwm"},    // /dev/random
	{"c", 1, 9, "rwm"},    // /dev/urandom
	{"c", 5, 0, "rwm"},    // /dev/tty
	{"c", 5, 1, "rwm"},    // /dev/console
	{"c", 5, 2, "rwm"},    // /dev/ptmx
	{"c", 136, -1, "rwm"}, // /dev/pts/*, the container's own devpts (and /dev/console with a terminal)
}

// propagationOptions are the mount options that set a mount's propagation.
var propagationOptions = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"}

// CPU quotas are counted in this period (µs), Docker's default for --cpus.
const cpuPeriod = 100000

// minMemory is Docker's smallest memory limit: below it the container's runtime itself
// does not fit and the start fails in confusing ways.
const minMemory = 6 << 20

// specHost is what Spec learns from the machine it runs on, kept apart so tests can
// describe another machine.
type specHost struct {
	// cgroup2 is true where /sys/fs/cgroup is the unified (v2) hierarchy.
	cgroup2 bool
	// rlimitHard reports the daemon's own hard limit of an rlimit resource.
	rlimitHard func(resource int) (uint64, error)
}

func currentSpecHost() (specHost, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return specHost{}, fmt.Errorf("find the cgroup version: statfs /sys/fs/cgroup: %w", err)
	}
	return specHost{cgroup2: st.Type == unix.CGROUP2_SUPER_MAGIC, rlimitHard: hostRlimitHard}, nil
}

// Spec builds the OCI runtime spec of cfg with Docker's defaults. It reads cfg.Rootfs
// (untrusted: the container's own files) only to resolve the user. Errors that are the
// user's or the image's fault (no command, a relative working directory, an unknown user,
// an impossible limit) are marked errdefs.Invalid.
//
// Every rlimit is clamped to the daemon's own hard limit (see containerRlimits), so a
// daemon without CAP_SYS_RESOURCE can still start containers.
func Spec(cfg *runtime.Config, o SpecOptions) (*specs.Spec, error) {
	h, err := currentSpecHost()
	if err != nil {
		return nil, err
	}
	return buildSpec(cfg, o, h)
}

func buildSpec(cfg *runtime.Config, o SpecOptions, h specHost) (*specs.Spec, error) {
	if !filepath.IsAbs(cfg.Rootfs) {
		return nil, fmt.Errorf("container rootfs %q is not an absolute path", cfg.Rootfs)
	}
	if len(cfg.Args) == 0 || cfg.Args[0] == "" {
		return nil, errdefs.Invalid(errors.New("no command: the image has no Cmd or Entrypoint and none was given"))
	}
	// Docker's daemon environment comes first, so the image and the spec can override it.
	defaults := []string{"PATH=" + defaultPath}
	if cfg.Hostname != "" {
		defaults = append(defaults, "HOSTNAME="+cfg.Hostname)
	}
	if cfg.Tty {
		defaults = append(defaults, "TERM=xterm")
	}
	proc, err := specProcess(processRequest{
		rootfs: cfg.Rootfs,
		user:   cfg.User,
		args:   cfg.Args,
		cwd:    cfg.Cwd,
		tty:    cfg.Tty,
		env:    [][]string{defaults, cfg.Env},
	}, h.rlimitHard)
	if err != nil {
		return nil, err
	}
	// Docker sets 0 explicitly rather than inherit the daemon's score, which may be
	// lowered to protect the daemon and must not protect its containers too.
	proc.OOMScoreAdj = new(int)

	mounts, err := specMounts(cfg.Mounts, o)
	if err != nil {
		return nil, err
	}
	resources, err := specResources(cfg)
	if err != nil {
		return nil, err
	}

	namespaces := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	switch cfg.NetNS {
	case "host":
		// The host's own network.
	case "":
		// A new network namespace holds only loopback (runc brings it up).
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	default:
		// The one the engine made and put on the container's networks.
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetNS})
	}
	namespaces = append(namespaces,
		specs.LinuxNamespace{Type: specs.UTSNamespace},
		specs.LinuxNamespace{Type: specs.PIDNamespace},
		specs.LinuxNamespace{Type: specs.IPCNamespace})
	// Docker's default cgroupns mode: private on the unified hierarchy, the host's on v1,
	// where runc already shows the container only its own cgroups (it bind-mounts them
	// at /sys/fs/cgroup/<controller>) and tools of that era expect host paths in
	// /proc/self/cgroup.
	if h.cgroup2 {
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}

	var annotations map[string]string
	if len(cfg.Labels) > 0 {
		annotations = maps.Clone(cfg.Labels)
	}
	return &specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: cfg.Rootfs},
		Hostname:    cfg.Hostname,
		Process:     proc,
		Mounts:      mounts,
		Annotations: annotations,
		Linux: &specs.Linux{
			CgroupsPath: o.CgroupsPath,
			Namespaces:  namespaces,
			Resources:   resources,
			// Devices stays empty: runc creates the default nodes (null, zero, full,
			// random, urandom, tty) itself; the device cgroup above allows them.
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
			// No seccomp profile yet: Docker's default profile is a later step. Until
			// then the capability set and namespaces are the only confinement.
		},
	}, nil
}

// ExecProcess builds the process of an exec, for `runc exec --process`, with the same
// user resolution, capabilities, rlimits and environment defaults as Spec.
//
// containerEnv is the container's environment as configured, before Spec's defaults:
// runtime.Config.Env plus HOSTNAME=<hostname>, which is what Docker gives an exec. The
// exec's own cfg.Env overrides it; PATH, TERM=xterm (with a terminal) and the exec
// user's HOME are added where absent. (The main process's environment from config.json
// also works, but it carries the main user's HOME, wrong for an exec as another user.)
//
// cfg.User and cfg.Cwd are used as given ("" is root and "/"): Docker runs an exec as
// the container's user and in its working directory unless told otherwise, so the
// caller fills them from the container's when the exec names none.
func ExecProcess(rootfs string, cfg *runtime.ExecConfig, containerEnv []string) (*specs.Process, error) {
	if len(cfg.Args) == 0 || cfg.Args[0] == "" {
		return nil, errdefs.Invalid(errors.New("no command given to exec"))
	}
	defaults := []string{"PATH=" + defaultPath}
	if cfg.Tty {
		defaults = append(defaults, "TERM=xterm")
	}
	return specProcess(processRequest{
		rootfs: rootfs,
		user:   cfg.User,
		args:   cfg.Args,
		cwd:    cfg.Cwd,
		tty:    cfg.Tty,
		env:    [][]string{defaults, containerEnv, cfg.Env},
	}, hostRlimitHard)
}

// processRequest is what the main process and an exec have in common.
type processRequest struct {
	rootfs string
	user   string
	args   []string
	cwd    string
	tty    bool
	// env are layers of KEY=VALUE lists, each overriding the ones before.
	env [][]string
}

func specProcess(r processRequest, rlimitHard func(int) (uint64, error)) (*specs.Process, error) {
	cwd := r.cwd
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, errdefs.Invalid(fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", r.cwd))
	}
	user, home, err := ResolveUser(r.rootfs, r.user)
	if err != nil {
		return nil, err
	}
	env, err := mergeEnv(r.env...)
	if err != nil {
		return nil, err
	}
	// runc would add HOME itself, but from the passwd file as seen inside the container
	// at start; setting it here keeps config.json the whole truth.
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+home)
	}
	rlimits, err := containerRlimits(rlimitHard)
	if err != nil {
		return nil, err
	}
	return &specs.Process{
		Terminal:     r.tty,
		User:         user,
		Args:         slices.Clone(r.args),
		Env:          env,
		Cwd:          path.Clean(cwd),
		Capabilities: capabilitiesFor(user.UID),
		Rlimits:      rlimits,
	}, nil
}

// capabilitiesFor returns the capabilities of a process running as uid. As Docker does
// since 24.0, a non-root user keeps the default bounding set (so a setuid or file-capable
// binary can still gain them) but starts with empty effective and permitted sets, like
// any non-root process on a host. Inheritable and ambient stay empty: they would let
// capabilities survive execve into programs that did not ask for them.
func capabilitiesFor(uid uint32) *specs.LinuxCapabilities {
	c := &specs.LinuxCapabilities{Bounding: slices.Clone(defaultCapabilities)}
	if uid == 0 {
		c.Effective = slices.Clone(defaultCapabilities)
		c.Permitted = slices.Clone(defaultCapabilities)
	}
	return c
}

// mergeEnv merges layers of KEY=VALUE lists as Docker's ReplaceOrAppendEnvValues does: a
// later value replaces an earlier one in place, a new key is appended, and a bare KEY
// (no "=") removes the key.
func mergeEnv(layers ...[]string) ([]string, error) {
	var out []string
	index := map[string]int{}
	for _, layer := range layers {
		for _, kv := range layer {
			if strings.ContainsRune(kv, 0) {
				return nil, errdefs.Invalid(fmt.Errorf("invalid environment variable %q: contains a NUL byte", kv))
			}
			key, _, hasValue := strings.Cut(kv, "=")
			if key == "" {
				return nil, errdefs.Invalid(fmt.Errorf("invalid environment variable %q: empty name", kv))
			}
			i, seen := index[key]
			switch {
			case !hasValue && seen:
				out[i] = ""
				delete(index, key)
			case !hasValue:
			case seen:
				out[i] = kv
			default:
				index[key] = len(out)
				out = append(out, kv)
			}
		}
	}
	return slices.DeleteFunc(out, func(kv string) bool { return kv == "" }), nil
}

func hasEnv(env []string, key string) bool {
	return slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
}

// defaultMounts are Docker's (moby oci.DefaultLinuxSpec), with /dev/shm a private tmpfs
// of Docker's default 64 MiB.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}

// specMounts returns the default mounts, the runtime's /etc files and cfg's mounts, in
// that order. A mount of cfg's replaces a default at the same destination, and one at
// /dev replaces every default below /dev too, as in Docker.
func specMounts(mounts []runtime.Mount, o SpecOptions) ([]specs.Mount, error) {
	own := make([]specs.Mount, 0, len(mounts))
	dests := map[string]bool{}
	for _, m := range mounts {
		sm, err := specMount(m)
		if err != nil {
			return nil, err
		}
		own = append(own, sm)
		dests[sm.Destination] = true
	}
	// Parents before children, whatever order they were given in: a mount at /a would
	// hide one at /a/b made before it.
	slices.SortStableFunc(own, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	overridden := func(dest string) bool {
		return dests[dest] || (dests["/dev"] && strings.HasPrefix(dest, "/dev/"))
	}

	var out []specs.Mount
	for _, m := range defaultMounts() {
		if !overridden(m.Destination) {
			out = append(out, m)
		}
	}
	for _, f := range []struct{ dest, source string }{
		{"/etc/hostname", o.HostnameFile},
		{"/etc/hosts", o.HostsFile},
		{"/etc/resolv.conf", o.ResolvConf},
	} {
		if f.source == "" || overridden(f.dest) {
			continue
		}
		if !filepath.IsAbs(f.source) {
			return nil, fmt.Errorf("source of %s, %q, is not an absolute path", f.dest, f.source)
		}
		// Writable, as in Docker: programs in the container may update them and the
		// daemon owns the files, not the image.
		out = append(out, specs.Mount{Destination: f.dest, Type: "bind", Source: f.source, Options: []string{"rbind", "rprivate"}})
	}
	return append(out, own...), nil
}

// specMount translates one of cfg's mounts. A bind without "bind" or "rbind" among its
// options is recursive, and one without a propagation option is rprivate, as Docker's
// binds are (runc needs the option to know it is a bind at all).
func specMount(m runtime.Mount) (specs.Mount, error) {
	if !path.IsAbs(m.Destination) {
		return specs.Mount{}, errdefs.Invalid(fmt.Errorf("invalid mount destination %q: not an absolute path", m.Destination))
	}
	dest := path.Clean(m.Destination)
	if dest == "/" {
		return specs.Mount{}, errdefs.Invalid(errors.New("invalid mount destination \"/\": cannot mount over the container's root"))
	}
	sm := specs.Mount{Destination: dest, Type: m.Type, Source: m.Source, Options: slices.Clone(m.Options)}
	if sm.Type == "" && sm.Source != "" {
		sm.Type = "bind"
	}
	switch sm.Type {
	case "":
		return specs.Mount{}, errdefs.Invalid(fmt.Errorf("mount at %s has neither a type nor a source", dest))
	case "bind":
		if !filepath.IsAbs(sm.Source) {
			return specs.Mount{}, errdefs.Invalid(fmt.Errorf("invalid bind mount source %q for %s: not an absolute path", sm.Source, dest))
		}
		if !slices.Contains(sm.Options, "bind") && !slices.Contains(sm.Options, "rbind") {
			sm.Options = append(sm.Options, "rbind")
		}
		if !slices.ContainsFunc(sm.Options, func(o string) bool { return slices.Contains(propagationOptions, o) }) {
			sm.Options = append(sm.Options, "rprivate")
		}
	default:
		if sm.Source == "" {
			sm.Source = sm.Type
		}
	}
	return sm, nil
}

// specResources returns the device rules and limits of cfg.
func specResources(cfg *runtime.Config) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{Devices: deviceRules()}
	switch {
	case cfg.Memory < 0:
		return nil, errdefs.Invalid(fmt.Errorf("invalid memory limit %d: negative", cfg.Memory))
	case cfg.Memory > 0 && cfg.Memory < minMemory:
		return nil, errdefs.Invalid(errors.New("minimum memory limit allowed is 6MB"))
	case cfg.Memory > 0:
		// No swap limit: on cgroup v1 memory.memsw.* only exists with swap accounting
		// on, and runc fails the start where it is missing; on v2 memory.swap.max may
		// be missing likewise. Docker checks for swap accounting before setting its
		// default of memory+swap = 2 × memory; we leave swap to the host's policy.
		limit := cfg.Memory
		r.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if cfg.CPUs != 0 {
		n := goruntime.NumCPU()
		if math.IsNaN(cfg.CPUs) || cfg.CPUs < 0.01 || cfg.CPUs > float64(n) {
			return nil, errdefs.Invalid(fmt.Errorf("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", n, n))
		}
		quota := int64(math.Round(cfg.CPUs * cpuPeriod))
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return r, nil
}

// deviceRules denies every device, then allows allowedDevices.
func deviceRules() []specs.LinuxDeviceCgroup {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range allowedDevices {
		rule := specs.LinuxDeviceCgroup{Allow: true, Type: d.typ, Access: d.access}
		if d.major >= 0 {
			rule.Major = &d.major
		}
		if d.minor >= 0 {
			rule.Minor = &d.minor
		}
		rules = append(rules, rule)
	}
	return rules
}

//go:build linux

package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// testRootfs is a rootfs with /etc/passwd and /etc/group, for the unit tests.
func testRootfs(t *testing.T) string {
	t.Helper()
	rootfs := harness.Dir(t)
	writeEntries(t, rootfs,
		fsEntry{path: "etc/passwd", body: testPasswd},
		fsEntry{path: "etc/group", body: testGroup},
	)
	return rootfs
}

// fakeHost is a cgroup v1 machine whose hard RLIMIT_NOFILE is 20000, like the CI VMs.
func fakeHost() specHost {
	return specHost{rlimitHard: func(int) (uint64, error) { return 20000, nil }}
}

func TestSpecEnvDefaults(t *testing.T) {
	rootfs := testRootfs(t)
	const path = "PATH=" + defaultPath
	tests := []struct {
		name    string
		cfg     runtime.Config
		want    []string
		wantErr string
		invalid bool
	}{
		{name: "defaults for root",
			cfg:  runtime.Config{Hostname: "h1"},
			want: []string{path, "HOSTNAME=h1", "HOME=/root"}},
		{name: "TERM with a terminal",
			cfg:  runtime.Config{Hostname: "h1", Tty: true},
			want: []string{path, "HOSTNAME=h1", "TERM=xterm", "HOME=/root"}},
		{name: "no HOSTNAME without a hostname",
			cfg:  runtime.Config{},
			want: []string{path, "HOME=/root"}},
		{name: "the image's PATH replaces the default in place",
			cfg:  runtime.Config{Hostname: "h1", Env: []string{"FOO=1", "PATH=/x"}},
			want: []string{"PATH=/x", "HOSTNAME=h1", "FOO=1", "HOME=/root"}},
		{name: "the image's TERM wins over the terminal's",
			cfg:  runtime.Config{Hostname: "h1", Tty: true, Env: []string{"TERM=vt100"}},
			want: []string{path, "HOSTNAME=h1", "TERM=vt100", "HOME=/root"}},
		{name: "the image's HOME wins over passwd",
			cfg:  runtime.Config{Hostname: "h1", Env: []string{"HOME=/app"}},
			want: []string{path, "HOSTNAME=h1", "HOME=/app"}},
		{name: "HOME of a named user",
			cfg:  runtime.Config{Hostname: "h1", User: "alice"},
			want: []string{path, "HOSTNAME=h1", "HOME=/home/alice"}},
		{name: "HOME of an unknown uid is /",
			cfg:  runtime.Config{Hostname: "h1", User: "4242"},
			want: []string{path, "HOSTNAME=h1", "HOME=/"}},
		{name: "a bare name unsets",
			cfg:  runtime.Config{Hostname: "h1", Env: []string{"HOSTNAME", "NOTSET"}},
			want: []string{path, "HOME=/root"}},
		{name: "the last of duplicates wins",
			cfg:  runtime.Config{Env: []string{"A=1", "B=2", "A=3", "C="}},
			want: []string{path, "A=3", "B=2", "C=", "HOME=/root"}},
		{name: "an empty name is refused",
			cfg:     runtime.Config{Env: []string{"=x"}},
			wantErr: "empty name", invalid: true},
		{name: "a NUL byte is refused",
			cfg:     runtime.Config{Env: []string{"A=b\x00c"}},
			wantErr: "NUL", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Rootfs, cfg.Args = rootfs, []string{"true"}
			s, err := buildSpec(&cfg, SpecOptions{}, fakeHost())
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr, tt.invalid)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Env, tt.want) {
				t.Errorf("env = %q\nwant  %q", s.Process.Env, tt.want)
			}
		})
	}
}

// checkErr fails t unless err contains want and, if invalid, is errdefs.Invalid.
func checkErr(t *testing.T, err error, want string, invalid bool) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
	if invalid != errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("errors.Is(%v, errdefs.ErrInvalidArgument) = %v, want %v", err, !invalid, invalid)
	}
}

func TestExecProcessEnv(t *testing.T) {
	rootfs := testRootfs(t)
	const path = "PATH=" + defaultPath
	containerEnv := []string{"PATH=/image/bin", "HOSTNAME=c1", "FOO=container"}
	tests := []struct {
		name         string
		cfg          runtime.ExecConfig
		containerEnv []string
		want         []string
	}{
		{name: "inherits the container's",
			cfg:          runtime.ExecConfig{Args: []string{"env"}},
			containerEnv: containerEnv,
			want:         []string{"PATH=/image/bin", "HOSTNAME=c1", "FOO=container", "HOME=/root"}},
		{name: "the exec's own env wins",
			cfg:          runtime.ExecConfig{Args: []string{"env"}, Env: []string{"FOO=exec", "BAR=1"}},
			containerEnv: containerEnv,
			want:         []string{"PATH=/image/bin", "HOSTNAME=c1", "FOO=exec", "BAR=1", "HOME=/root"}},
		{name: "defaults without a container env",
			cfg:  runtime.ExecConfig{Args: []string{"env"}, Tty: true, User: "bob"},
			want: []string{path, "TERM=xterm", "HOME=/home/bob"}},
		{name: "HOME of the exec's user",
			cfg:          runtime.ExecConfig{Args: []string{"env"}, User: "alice"},
			containerEnv: containerEnv,
			want:         []string{"PATH=/image/bin", "HOSTNAME=c1", "FOO=container", "HOME=/home/alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ExecProcess(rootfs, &tt.cfg, tt.containerEnv)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Env, tt.want) {
				t.Errorf("env = %q\nwant  %q", p.Env, tt.want)
			}
		})
	}
}

func TestSpecProcessErrors(t *testing.T) {
	rootfs := testRootfs(t)
	tests := []struct {
		name    string
		cfg     runtime.Config
		wantErr string
		invalid bool
	}{
		{name: "no command", cfg: runtime.Config{Rootfs: rootfs},
			wantErr: "no command: the image has no Cmd or Entrypoint and none was given", invalid: true},
		{name: "empty command", cfg: runtime.Config{Rootfs: rootfs, Args: []string{""}},
			wantErr: "no command", invalid: true},
		{name: "relative working directory", cfg: runtime.Config{Rootfs: rootfs, Args: []string{"true"}, Cwd: "app"},
			wantErr: "the working directory 'app' is invalid, it needs to be an absolute path", invalid: true},
		{name: "unknown user", cfg: runtime.Config{Rootfs: rootfs, Args: []string{"true"}, User: "mallory"},
			wantErr: "unable to find user mallory", invalid: true},
		{name: "relative rootfs is the runtime's fault", cfg: runtime.Config{Rootfs: "rootfs", Args: []string{"true"}},
			wantErr: "not an absolute path", invalid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildSpec(&tt.cfg, SpecOptions{}, fakeHost())
			checkErr(t, err, tt.wantErr, tt.invalid)
		})
	}

	execTests := []struct {
		name    string
		cfg     runtime.ExecConfig
		wantErr string
	}{
		{name: "exec without command", cfg: runtime.ExecConfig{}, wantErr: "no command"},
		{name: "exec in a relative directory", cfg: runtime.ExecConfig{Args: []string{"pwd"}, Cwd: "tmp"}, wantErr: "needs to be an absolute path"},
		{name: "exec as an unknown user", cfg: runtime.ExecConfig{Args: []string{"id"}, User: "mallory"}, wantErr: "unable to find user mallory"},
	}
	for _, tt := range execTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ExecProcess(rootfs, &tt.cfg, nil)
			checkErr(t, err, tt.wantErr, true)
		})
	}
}

func TestSpecCwd(t *testing.T) {
	rootfs := testRootfs(t)
	for _, tt := range []struct{ cwd, want string }{
		{"", "/"},
		{"/", "/"},
		{"/srv/app", "/srv/app"},
		{"/srv/../app/", "/app"},
	} {
		cfg := runtime.Config{Rootfs: rootfs, Args: []string{"true"}, Cwd: tt.cwd}
		s, err := buildSpec(&cfg, SpecOptions{}, fakeHost())
		if err != nil {
			t.Fatalf("cwd %q: %v", tt.cwd, err)
		}
		if s.Process.Cwd != tt.want {
			t.Errorf("cwd %q: got %q, want %q", tt.cwd, s.Process.Cwd, tt.want)
		}
		p, err := ExecProcess(rootfs, &runtime.ExecConfig{Args: []string{"pwd"}, Cwd: tt.cwd}, nil)
		if err != nil {
			t.Fatalf("exec cwd %q: %v", tt.cwd, err)
		}
		if p.Cwd != tt.want {
			t.Errorf("exec cwd %q: got %q, want %q", tt.cwd, p.Cwd, tt.want)
		}
	}
}

func TestContainerRlimits(t *testing.T) {
	const inf = unix.RLIM_INFINITY
	tests := []struct {
		name     string
		hostHard uint64
		want     uint64 // soft and hard of RLIMIT_NOFILE
	}{
		{"host below Docker's default: clamped", 20000, 20000},
		{"host at Docker's default", 1 << 20, 1 << 20},
		{"host above Docker's default", 4 << 20, 1 << 20},
		{"host unlimited", inf, 1 << 20},
		{"host at 1024", 1024, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := containerRlimits(func(resource int) (uint64, error) {
				if resource != unix.RLIMIT_NOFILE {
					t.Errorf("asked for resource %d", resource)
				}
				return tt.hostHard, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: tt.want, Hard: tt.want}}
			if !slices.Equal(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	_, err := containerRlimits(func(int) (uint64, error) { return 0, unix.EINVAL })
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Errorf("a failing getrlimit gave %v, want an error naming the limit", err)
	}
}

// TestSpecRlimitsFollowTheDaemon checks Spec clamps to this process's real hard limit.
func TestSpecRlimitsFollowTheDaemon(t *testing.T) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	want := min(r.Max, 1<<20)
	s, err := Spec(&runtime.Config{Rootfs: testRootfs(t), Args: []string{"true"}}, SpecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ExecProcess(testRootfs(t), &runtime.ExecConfig{Args: []string{"true"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]specs.POSIXRlimit{"spec": s.Process.Rlimits, "exec": p.Rlimits} {
		if len(got) != 1 || got[0].Type != "RLIMIT_NOFILE" || got[0].Soft != want || got[0].Hard != want {
			t.Errorf("%s rlimits = %+v, want RLIMIT_NOFILE %d (hard limit here %d)", name, got, want, r.Max)
		}
	}
}

func TestCapabilities(t *testing.T) {
	rootfs := testRootfs(t)
	tests := []struct {
		user string
		root bool
	}{
		{"", true},
		{"root", true},
		{"0:50", true},
		{"alice", false},
		{"1000:0", false},
		{"4242", false},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			s, err := buildSpec(&runtime.Config{Rootfs: rootfs, Args: []string{"true"}, User: tt.user}, SpecOptions{}, fakeHost())
			if err != nil {
				t.Fatal(err)
			}
			p, err := ExecProcess(rootfs, &runtime.ExecConfig{Args: []string{"true"}, User: tt.user}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, c := range map[string]*specs.LinuxCapabilities{"spec": s.Process.Capabilities, "exec": p.Capabilities} {
				if !slices.Equal(c.Bounding, defaultCapabilities) {
					t.Errorf("%s bounding = %v, want Docker's default", name, c.Bounding)
				}
				var want []string
				if tt.root {
					want = defaultCapabilities
				}
				if !slices.Equal(c.Effective, want) || !slices.Equal(c.Permitted, want) {
					t.Errorf("%s effective = %v, permitted = %v, want %v", name, c.Effective, c.Permitted, want)
				}
				if len(c.Inheritable) > 0 || len(c.Ambient) > 0 {
					t.Errorf("%s inheritable = %v, ambient = %v, want none", name, c.Inheritable, c.Ambient)
				}
			}
		})
	}
	if len(defaultCapabilities) != 14 {
		t.Errorf("Docker's default set has 14 capabilities, ours %d", len(defaultCapabilities))
	}
}

func TestSpecResources(t *testing.T) {
	rootfs := testRootfs(t)
	n := goruntime.NumCPU()
	tests := []struct {
		name      string
		memory    int64
		cpus      float64
		wantMem   int64 // 0: no memory limit
		wantQuota int64 // 0: no CPU limit
		wantErr   string
	}{
		{name: "none"},
		{name: "memory", memory: 64 << 20, wantMem: 64 << 20},
		{name: "one CPU", cpus: 1, wantQuota: 100000},
		{name: "half a CPU", cpus: 0.5, wantQuota: 50000},
		{name: "all CPUs", cpus: float64(n), wantQuota: int64(n) * 100000},
		{name: "a hundredth", cpus: 0.01, wantQuota: 1000},
		{name: "both", memory: 1 << 30, cpus: 0.25, wantMem: 1 << 30, wantQuota: 25000},
		{name: "negative memory", memory: -1, wantErr: "negative"},
		{name: "tiny memory", memory: 1 << 20, wantErr: "minimum memory limit allowed is 6MB"},
		{name: "too many CPUs", cpus: float64(n) + 1, wantErr: "range of CPUs is from 0.01"},
		{name: "too few CPUs", cpus: 0.001, wantErr: "range of CPUs is from 0.01"},
		{name: "negative CPUs", cpus: -1, wantErr: "range of CPUs is from 0.01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, h := range []specHost{fakeHost(), {cgroup2: true, rlimitHard: fakeHost().rlimitHard}} {
				cfg := runtime.Config{Rootfs: rootfs, Args: []string{"true"}, Memory: tt.memory, CPUs: tt.cpus}
				s, err := buildSpec(&cfg, SpecOptions{}, h)
				if tt.wantErr != "" {
					checkErr(t, err, tt.wantErr, true)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				r := s.Linux.Resources
				switch {
				case tt.wantMem == 0 && r.Memory != nil:
					t.Errorf("cgroup2=%v: memory = %+v, want none", h.cgroup2, r.Memory)
				case tt.wantMem != 0 && (r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit != tt.wantMem):
					t.Errorf("cgroup2=%v: memory = %+v, want limit %d", h.cgroup2, r.Memory, tt.wantMem)
				case r.Memory != nil && r.Memory.Swap != nil:
					t.Errorf("cgroup2=%v: swap = %d, want unset (memsw may be missing)", h.cgroup2, *r.Memory.Swap)
				}
				switch {
				case tt.wantQuota == 0 && r.CPU != nil:
					t.Errorf("cpu = %+v, want none", r.CPU)
				case tt.wantQuota != 0 && (r.CPU == nil || r.CPU.Quota == nil || *r.CPU.Quota != tt.wantQuota ||
					r.CPU.Period == nil || *r.CPU.Period != 100000):
					t.Errorf("cpu = %+v, want quota %d period 100000", r.CPU, tt.wantQuota)
				}
				if r.Pids != nil {
					t.Errorf("pids = %+v, want no limit", r.Pids)
				}
			}
		})
	}
}

func TestSpecDeviceRules(t *testing.T) {
	s, err := buildSpec(&runtime.Config{Rootfs: testRootfs(t), Args: []string{"true"}}, SpecOptions{}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	rules := s.Linux.Resources.Devices
	if len(rules) == 0 || rules[0].Allow || rules[0].Type != "" || rules[0].Major != nil || rules[0].Access != "rwm" {
		t.Fatalf("first device rule = %+v, want deny all", rules)
	}
	allowed := func(typ string, major, minor int64, access string) bool {
		for _, r := range rules[1:] {
			if r.Allow && r.Type == typ && (r.Major == nil || *r.Major == major) && (r.Minor == nil || *r.Minor == minor) &&
				strings.Contains(r.Access, access) {
				return true
			}
		}
		return false
	}
	for _, d := range []struct {
		name         string
		major, minor int64
	}{
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
		{"tty", 5, 0}, {"ptmx", 5, 2}, {"pts/0", 136, 0}, {"pts/7", 136, 7},
	} {
		if !allowed("c", d.major, d.minor, "rwm") {
			t.Errorf("/dev/%s (c %d:%d) is not allowed rwm", d.name, d.major, d.minor)
		}
	}
	if allowed("b", 8, 0, "r") || allowed("c", 10, 237, "r") || allowed("c", 1, 1, "r") {
		t.Error("a disk, /dev/loop-control or /dev/mem is readable")
	}
	if len(s.Linux.Devices) != 0 {
		t.Errorf("linux.devices = %+v, want empty (runc makes the defaults)", s.Linux.Devices)
	}
}

func TestSpecNamespaces(t *testing.T) {
	rootfs := testRootfs(t)
	for _, cgroup2 := range []bool{false, true} {
		h := fakeHost()
		h.cgroup2 = cgroup2
		s, err := buildSpec(&runtime.Config{Rootfs: rootfs, Args: []string{"true"}}, SpecOptions{}, h)
		if err != nil {
			t.Fatal(err)
		}
		var got []specs.LinuxNamespaceType
		for _, ns := range s.Linux.Namespaces {
			if ns.Path != "" {
				t.Errorf("namespace %s joins %s, want a new one", ns.Type, ns.Path)
			}
			got = append(got, ns.Type)
		}
		want := []specs.LinuxNamespaceType{specs.MountNamespace, specs.NetworkNamespace, specs.UTSNamespace, specs.PIDNamespace, specs.IPCNamespace}
		if cgroup2 {
			want = append(want, specs.CgroupNamespace)
		}
		if !slices.Equal(got, want) {
			t.Errorf("cgroup2=%v: namespaces %v, want %v", cgroup2, got, want)
		}
	}
}

func TestSpecMounts(t *testing.T) {
	rootfs := testRootfs(t)
	etc := SpecOptions{HostnameFile: "/run/c/hostname", HostsFile: "/run/c/hosts", ResolvConf: "/run/c/resolv.conf"}
	defaults := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}
	etcFiles := []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
	tests := []struct {
		name      string
		o         SpecOptions
		mounts    []runtime.Mount
		wantDests []string
		check     func(t *testing.T, ms []specs.Mount)
		wantErr   string
	}{
		{name: "defaults only", wantDests: defaults},
		{name: "with the /etc files", o: etc, wantDests: append(slices.Clone(defaults), etcFiles...),
			check: func(t *testing.T, ms []specs.Mount) {
				for _, m := range ms[len(defaults):] {
					if m.Type != "bind" || !slices.Equal(m.Options, []string{"rbind", "rprivate"}) {
						t.Errorf("%s = %+v, want a writable rbind, rprivate", m.Destination, m)
					}
				}
				if ms[len(defaults)].Source != "/run/c/hostname" {
					t.Errorf("hostname source = %q", ms[len(defaults)].Source)
				}
			}},
		{name: "the config's mounts come last, parents first", o: etc,
			mounts: []runtime.Mount{
				{Destination: "/data/cache", Type: "tmpfs", Options: []string{"size=1m"}},
				{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"ro"}},
			},
			wantDests: append(append(slices.Clone(defaults), etcFiles...), "/data", "/data/cache"),
			check: func(t *testing.T, ms []specs.Mount) {
				data, cache := ms[len(ms)-2], ms[len(ms)-1]
				if !slices.Equal(data.Options, []string{"ro", "rbind", "rprivate"}) || data.Source != "/srv/data" {
					t.Errorf("bind = %+v, want ro, rbind, rprivate from /srv/data", data)
				}
				if cache.Source != "tmpfs" || !slices.Equal(cache.Options, []string{"size=1m"}) {
					t.Errorf("tmpfs = %+v", cache)
				}
			}},
		{name: "an explicit bind and propagation are kept",
			mounts:    []runtime.Mount{{Destination: "/x/", Type: "bind", Source: "/srv/x", Options: []string{"bind", "rslave"}}},
			wantDests: append(slices.Clone(defaults), "/x"),
			check: func(t *testing.T, ms []specs.Mount) {
				if got := ms[len(ms)-1].Options; !slices.Equal(got, []string{"bind", "rslave"}) {
					t.Errorf("options = %v, want bind, rslave", got)
				}
			}},
		{name: "a mount of the config's replaces the default and the /etc file", o: etc,
			mounts: []runtime.Mount{
				{Destination: "/dev/shm", Type: "bind", Source: "/srv/shm"},
				{Destination: "/etc/hosts", Type: "bind", Source: "/srv/hosts"},
			},
			wantDests: []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
				"/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/etc/hosts"}},
		{name: "a mount at /dev replaces everything below it",
			mounts:    []runtime.Mount{{Destination: "/dev", Type: "bind", Source: "/dev"}},
			wantDests: []string{"/proc", "/sys", "/sys/fs/cgroup", "/dev"}},
		{name: "no type but a source is a bind",
			mounts:    []runtime.Mount{{Destination: "/y", Source: "/srv/y"}},
			wantDests: append(slices.Clone(defaults), "/y"),
			check: func(t *testing.T, ms []specs.Mount) {
				if m := ms[len(ms)-1]; m.Type != "bind" || !slices.Equal(m.Options, []string{"rbind", "rprivate"}) {
					t.Errorf("mount = %+v, want an rbind", m)
				}
			}},
		{name: "relative destination", mounts: []runtime.Mount{{Destination: "data", Type: "tmpfs"}}, wantErr: "not an absolute path"},
		{name: "destination /", mounts: []runtime.Mount{{Destination: "/", Type: "bind", Source: "/srv"}}, wantErr: "cannot mount over"},
		{name: "relative bind source", mounts: []runtime.Mount{{Destination: "/d", Type: "bind", Source: "srv"}}, wantErr: "not an absolute path"},
		{name: "neither type nor source", mounts: []runtime.Mount{{Destination: "/d"}}, wantErr: "neither a type nor a source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(&runtime.Config{Rootfs: rootfs, Args: []string{"true"}, Mounts: tt.mounts}, tt.o, fakeHost())
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr, true)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var dests []string
			for _, m := range s.Mounts {
				dests = append(dests, m.Destination)
			}
			if !slices.Equal(dests, tt.wantDests) {
				t.Fatalf("mounts %v\nwant   %v", dests, tt.wantDests)
			}
			if tt.check != nil {
				tt.check(t, s.Mounts)
			}
		})
	}

	// Docker's options for the defaults, which the runc tests cannot all observe.
	s, err := buildSpec(&runtime.Config{Rootfs: rootfs, Args: []string{"true"}}, SpecOptions{}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	byDest := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		byDest[m.Destination] = m
	}
	for dest, want := range map[string][]string{
		"/dev":     {"nosuid", "strictatime", "mode=755", "size=65536k"},
		"/dev/pts": {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
		"/sys":     {"nosuid", "noexec", "nodev", "ro"},
		"/dev/shm": {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"},
	} {
		if got := byDest[dest].Options; !slices.Equal(got, want) {
			t.Errorf("%s options = %v, want %v", dest, got, want)
		}
	}
}

func TestSpecFixedDefaults(t *testing.T) {
	rootfs := testRootfs(t)
	labels := map[string]string{"com.example.team": "storage"}
	cfg := runtime.Config{Rootfs: rootfs, Args: []string{"sh", "-c", "true"}, Hostname: "web-1", Tty: true, Labels: labels}
	s, err := buildSpec(&cfg, SpecOptions{CgroupsPath: "/dutchman/abc"}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"version", s.Version == specs.Version},
		{"root", s.Root != nil && s.Root.Path == rootfs && !s.Root.Readonly},
		{"hostname", s.Hostname == "web-1"},
		{"args", slices.Equal(s.Process.Args, cfg.Args)},
		{"terminal", s.Process.Terminal},
		{"no new privileges off", !s.Process.NoNewPrivileges},
		{"oom score 0", s.Process.OOMScoreAdj != nil && *s.Process.OOMScoreAdj == 0},
		{"no apparmor", s.Process.ApparmorProfile == ""},
		{"no seccomp", s.Linux.Seccomp == nil},
		{"no user namespace mappings", s.Linux.UIDMappings == nil && s.Linux.GIDMappings == nil},
		{"cgroups path", s.Linux.CgroupsPath == "/dutchman/abc"},
		{"masked paths", slices.Equal(s.Linux.MaskedPaths, []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
			"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
			"/sys/firmware", "/sys/devices/virtual/powercap"})},
		{"readonly paths", slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})},
		{"annotations", len(s.Annotations) == 1 && s.Annotations["com.example.team"] == "storage"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: wrong in %s", c.what, specJSON(t, s))
		}
	}
	// The spec must not alias the engine's data or the package's tables.
	s.Annotations["x"] = "y"
	s.Process.Args[0] = "changed"
	s.Linux.MaskedPaths[0] = "changed"
	s.Process.Capabilities.Bounding[0] = "changed"
	if len(labels) != 1 || cfg.Args[0] != "sh" || maskedPaths[0] != "/proc/asound" || defaultCapabilities[0] != "CAP_CHOWN" {
		t.Error("changing the spec changed its inputs")
	}
	if s2, _ := buildSpec(&runtime.Config{Rootfs: rootfs, Args: []string{"true"}}, SpecOptions{}, fakeHost()); s2.Annotations != nil {
		t.Errorf("annotations without labels = %v, want none", s2.Annotations)
	}
}

func specJSON(t *testing.T, s any) string {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---- Real runc ----

// runcBundle is an OCI bundle with a busybox rootfs and a runc state directory of its own.
type runcBundle struct {
	dir    string // the bundle: config.json and rootfs/
	rootfs string
	state  string // runc --root
	id     string
}

// newRuncBundle extracts harness.BusyboxTar into a new bundle, plus a user alice (1000)
// with supplementary groups staff (50) and audio (29), and bob (1001) who is in neither.
func newRuncBundle(t *testing.T) *runcBundle {
	t.Helper()
	dir := harness.Dir(t)
	b := &runcBundle{dir: dir, rootfs: filepath.Join(dir, "rootfs"), state: filepath.Join(dir, "state"), id: "oci-test-" + randomHex(t)}
	untarRootfs(t, harness.BusyboxTar(t), b.rootfs)
	writeEntries(t, b.rootfs, fsEntry{path: "home/alice", dir: true})
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n" +
			"alice:x:1000:1000:Alice:/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
		"etc/group": "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:alice\naudio:x:29:alice\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(b.rootfs, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Whatever happened, leave no container, cgroup or state behind.
		out, err := exec.Command("runc", "--root", b.state, "delete", "-f", b.id).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "does not exist") {
			t.Logf("runc delete -f %s: %v: %s", b.id, err, out)
		}
	})
	return b
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// untarRootfs extracts the directories, files and symlinks of a layer into dir.
func untarRootfs(t *testing.T, layer []byte, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
			if err == nil {
				err = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeSticky(h.Mode))
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var body []byte
			if body, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, body, os.FileMode(h.Mode)&os.ModePerm)
			}
		default:
			t.Fatalf("unexpected tar entry %s of type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func modeSticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// writeConfig writes the spec of cfg (with the bundle's rootfs) as the bundle's config.json.
func (b *runcBundle) writeConfig(t *testing.T, cfg runtime.Config, o SpecOptions) *specs.Spec {
	t.Helper()
	cfg.Rootfs = b.rootfs
	if o.CgroupsPath == "" {
		o.CgroupsPath = "/dutchman/" + b.id
	}
	s, err := Spec(&cfg, o)
	if err != nil {
		t.Fatalf("Spec: %v", err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), []byte(specJSON(t, s)), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// runcResult is what a container printed and how it exited.
type runcResult struct {
	stdout, stderr string
	code           int
}

// runContainer runs cfg to completion with `runc run`, without a terminal.
func (b *runcBundle) runContainer(t *testing.T, cfg runtime.Config, o SpecOptions) runcResult {
	t.Helper()
	b.writeConfig(t, cfg, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", "--root", b.state, "run", "--bundle", b.dir, b.id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := runcResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("runc run: %v\nstderr: %s", err, r.stderr)
	}
	t.Logf("runc run %q: exit %d\nstdout:\n%s\nstderr:\n%s", cfg.Args, r.code, r.stdout, r.stderr)
	return r
}

// mustRun runs cfg and fails the test unless it exits 0.
func (b *runcBundle) mustRun(t *testing.T, cfg runtime.Config, o SpecOptions) string {
	t.Helper()
	r := b.runContainer(t, cfg, o)
	if r.code != 0 {
		t.Fatalf("container exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func shell(script string) []string { return []string{"/bin/sh", "-c", script} }

// parseID parses busybox id's "uid=1000(alice) gid=1000(alice) groups=29(audio),..." into
// its uid, gid and the ids of its groups.
func parseID(t *testing.T, out string) (uid, gid string, groups []string) {
	t.Helper()
	for _, f := range strings.Fields(out) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "uid":
			uid = v
		case "gid":
			gid = v
		case "groups":
			for _, g := range strings.Split(v, ",") {
				id, _, _ := strings.Cut(g, "(")
				groups = append(groups, id)
			}
		}
	}
	slices.SortFunc(groups, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return uid, gid, groups
}

func TestRuncUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		user             string
		wantUID, wantGID string
		wantGroups       []string
	}{
		{"alice", "1000(alice)", "1000(alice)", []string{"29", "50", "1000"}},
		{"alice:audio", "1000(alice)", "29(audio)", []string{"29"}},
		{"bob", "1001(bob)", "1001(bob)", []string{"1001"}},
		{"4242:4343", "4242", "4343", []string{"4343"}},
		{"", "0(root)", "0(root)", []string{"0"}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()
			b := newRuncBundle(t)
			out := b.mustRun(t, runtime.Config{Args: []string{"id"}, User: tt.user}, SpecOptions{})
			uid, gid, groups := parseID(t, out)
			if uid != tt.wantUID || gid != tt.wantGID || !slices.Equal(groups, tt.wantGroups) {
				t.Errorf("id = %q, want uid=%s gid=%s groups %v", strings.TrimSpace(out), tt.wantUID, tt.wantGID, tt.wantGroups)
			}
		})
	}
}

func TestRuncHostnameAndEtcFiles(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	files := harness.Dir(t)
	o := SpecOptions{
		HostnameFile: filepath.Join(files, "hostname"),
		HostsFile:    filepath.Join(files, "hosts"),
		ResolvConf:   filepath.Join(files, "resolv.conf"),
	}
	writeEntries(t, files,
		fsEntry{path: "hostname", body: "web-1\n"},
		fsEntry{path: "hosts", body: "127.0.0.1\tlocalhost\n10.0.0.5\tweb-1\n"},
		fsEntry{path: "resolv.conf", body: "nameserver 192.0.2.53\n"},
	)
	out := b.mustRun(t, runtime.Config{Hostname: "web-1",
		Args: shell(`hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf; echo changed > /etc/resolv.conf && echo writable`)}, o)
	want := "web-1\nweb-1\n127.0.0.1\tlocalhost\n10.0.0.5\tweb-1\nnameserver 192.0.2.53\nwritable\n"
	if out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
	if b, _ := os.ReadFile(o.ResolvConf); string(b) != "changed\n" {
		t.Errorf("the host's resolv.conf = %q: the container's write did not reach the bound file", b)
	}
}

// Docker's default capabilities as /proc/self/status shows them.
const dockerCapMask = "00000000a80425fb"

func TestRuncCapabilities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		user string
		want map[string]string
	}{
		{"", map[string]string{"CapInh": "0000000000000000", "CapPrm": dockerCapMask, "CapEff": dockerCapMask, "CapBnd": dockerCapMask, "CapAmb": "0000000000000000"}},
		{"alice", map[string]string{"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": dockerCapMask, "CapAmb": "0000000000000000"}},
	}
	for _, tt := range tests {
		t.Run("user="+tt.user, func(t *testing.T) {
			t.Parallel()
			b := newRuncBundle(t)
			out := b.mustRun(t, runtime.Config{User: tt.user, Args: []string{"grep", "^Cap", "/proc/self/status"}}, SpecOptions{})
			got := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				k, v, _ := strings.Cut(line, ":")
				got[k] = strings.TrimSpace(v)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestRuncMaskedAndReadonlyPaths checks every masked and read-only path that exists on
// this host (kernels differ: this project's CI VMs have no /proc/kcore or
// /proc/sysrq-trigger, and runc skips what does not exist).
func TestRuncMaskedAndReadonlyPaths(t *testing.T) {
	t.Parallel()
	var script strings.Builder
	var masked []string
	for _, p := range maskedPaths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		masked = append(masked, p)
		if st.IsDir() {
			fmt.Fprintf(&script, "echo \"masked %s: $(ls -A %s | wc -l) entries\"\n", p, p)
		} else {
			fmt.Fprintf(&script, "echo \"masked %s: $(test -c %s && echo char device) $(wc -c < %s) bytes\"\n", p, p, p)
		}
	}
	if len(masked) == 0 {
		t.Fatal("none of the masked paths exists on this host: nothing to check")
	}
	// /proc/sys/kernel/domainname belongs to the container's UTS namespace and root may
	// write it; only the read-only /proc/sys stops that.
	script.WriteString("echo \"write domainname: $(echo evil 2>&1 > /proc/sys/kernel/domainname)\"\n")
	script.WriteString("echo mountinfo:; cat /proc/self/mountinfo\n")

	b := newRuncBundle(t)
	out := b.mustRun(t, runtime.Config{Args: shell(script.String())}, SpecOptions{})
	for _, p := range masked {
		line := lineWithPrefix(out, "masked "+p+": ")
		want := "masked " + p + ": char device 0 bytes"
		if st, _ := os.Stat(p); st.IsDir() {
			want = "masked " + p + ": 0 entries"
		}
		if line != want {
			t.Errorf("got %q, want %q", line, want)
		}
	}
	if line := lineWithPrefix(out, "write domainname: "); !strings.Contains(line, "Read-only file system") {
		t.Errorf("%q: want the write refused with Read-only file system", line)
	}

	// Each read-only path is a read-only mount of its own.
	_, mountinfo, _ := strings.Cut(out, "mountinfo:\n")
	ro := map[string]bool{}
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) > 5 {
			ro[f[4]] = slices.Contains(strings.Split(f[5], ","), "ro")
		}
	}
	checked := 0
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		checked++
		if r, ok := ro[p]; !ok || !r {
			t.Errorf("%s: mounted %v, read-only %v; want a read-only mount", p, ok, r)
		}
	}
	if checked == 0 {
		t.Fatal("none of the read-only paths exists on this host: nothing to check")
	}
}

func lineWithPrefix(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestRuncNofileIsClamped(t *testing.T) {
	t.Parallel()
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatUint(min(r.Max, 1<<20), 10)
	b := newRuncBundle(t)
	out := b.mustRun(t, runtime.Config{Args: shell(`ulimit -n; ulimit -Hn`)}, SpecOptions{})
	if out != want+"\n"+want+"\n" {
		t.Errorf("soft and hard RLIMIT_NOFILE = %q, want %s (Docker's 1048576 clamped to this host's %d)", out, want, r.Max)
	}
}

func TestRuncResources(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	cgroupsPath := "/dutchman/" + b.id
	// On cgroup v1 runc mounts the container's own cgroup of each controller at
	// /sys/fs/cgroup/<controller>; on v2 (private cgroupns) it is /sys/fs/cgroup.
	out := b.mustRun(t, runtime.Config{Memory: 64 << 20, CPUs: 0.5, Args: shell(`
		echo memory-cgroup: $( (grep :memory: /proc/self/cgroup || grep ^0:: /proc/self/cgroup) | cut -d: -f3)
		echo memory: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)
		echo cpu: $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)
	`)}, SpecOptions{CgroupsPath: cgroupsPath})
	unified := isCgroup2(t)
	wantCgroup := cgroupsPath
	if unified {
		wantCgroup = "/" // a private cgroup namespace shows its own root
	}
	for _, want := range []string{"memory-cgroup: " + wantCgroup + "\n", "memory: 67108864\n", "cpu: 50000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestRuncNamespacesAndMounts checks which namespaces the container gets (new ones but
// the user namespace, and the cgroup one only on the unified hierarchy), that its network
// namespace is empty but for loopback, and Docker's mounts of /dev.
func TestRuncNamespacesAndMounts(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	out := b.mustRun(t, runtime.Config{Args: shell(`
		for ns in pid net ipc uts mnt cgroup user; do echo "ns $ns $(readlink /proc/self/ns/$ns)"; done
		echo "pid $$"
		echo "netdevs $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
		echo mountinfo:; cat /proc/self/mountinfo
	`)}, SpecOptions{})
	unified := isCgroup2(t)
	for _, ns := range []struct {
		name string
		new  bool
	}{
		{"pid", true}, {"net", true}, {"ipc", true}, {"uts", true}, {"mnt", true},
		{"cgroup", unified}, {"user", false},
	} {
		host, err := os.Readlink("/proc/self/ns/" + ns.name)
		if err != nil {
			t.Fatal(err)
		}
		inside := strings.TrimPrefix(lineWithPrefix(out, "ns "+ns.name+" "), "ns "+ns.name+" ")
		if inside == "" || (inside != host) != ns.new {
			t.Errorf("%s namespace: inside %q, host %q; want a new one: %v", ns.name, inside, host, ns.new)
		}
	}
	if got := lineWithPrefix(out, "pid "); got != "pid 1" {
		t.Errorf("%q: the command is not pid 1 of its own pid namespace", got)
	}
	if got := lineWithPrefix(out, "netdevs "); got != "netdevs lo " {
		t.Errorf("%q: want only loopback in the network namespace", got)
	}

	_, mountinfo, _ := strings.Cut(out, "mountinfo:\n")
	mounts := map[string]string{} // mount point -> "fstype superblock-options"
	for _, l := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && len(g) > 2 {
			mounts[f[4]] = g[0] + " " + g[2]
		}
	}
	for dest, want := range map[string][]string{
		"/dev":        {"tmpfs", "size=65536k", "mode=755"},
		"/dev/pts":    {"devpts", "gid=5", "mode=620", "ptmxmode=666"},
		"/dev/shm":    {"tmpfs", "size=65536k"},
		"/dev/mqueue": {"mqueue"},
		"/sys":        {"sysfs", "ro"},
		"/proc":       {"proc"},
	} {
		got, ok := mounts[dest]
		if !ok {
			t.Errorf("%s is not a mount point", dest)
			continue
		}
		fstype, opts, _ := strings.Cut(got, " ")
		if fstype != want[0] {
			t.Errorf("%s is %s, want %s", dest, fstype, want[0])
		}
		for _, o := range want[1:] {
			if !slices.Contains(strings.Split(opts, ","), o) {
				t.Errorf("%s options %s lack %s", dest, opts, o)
			}
		}
	}
}

func isCgroup2(t *testing.T) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

func TestRuncEnvDefaults(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	out := b.mustRun(t, runtime.Config{User: "alice", Hostname: "envhost", Env: []string{"FOO=bar"}, Cwd: "/home/alice",
		Args: shell(`env; echo cwd=$(pwd)`)}, SpecOptions{})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{"PATH=" + defaultPath, "HOSTNAME=envhost", "HOME=/home/alice", "FOO=bar", "cwd=/home/alice"} {
		if !slices.Contains(lines, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "TERM=") }) {
		t.Error("TERM is set without a terminal")
	}
}

func TestRuncExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		want   int
	}{
		{"success", "exit 0", 0},
		{"exit 3", "exit 3", 3},
		{"exit 255", "exit 255", 255},
		// The shell is pid 1 of its namespace, which ignores signals it has no handler
		// for even from root: the signal must come from a child's death.
		{"command not found", "nonexistent-command", 127},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newRuncBundle(t)
			if r := b.runContainer(t, runtime.Config{Args: shell(tt.script)}, SpecOptions{}); r.code != tt.want {
				t.Errorf("exit code %d, want %d", r.code, tt.want)
			}
		})
	}
}

// TestRuncKilledBySignal checks a signal from outside (as `dutchman kill` sends) comes
// back from runc run as 128+signal, as shells and Docker report it.
func TestRuncKilledBySignal(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	b.writeConfig(t, runtime.Config{Args: []string{"sleep", "600"}}, SpecOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "runc", "--root", b.state, "run", "--bundle", b.dir, b.id)
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Wait()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _ := exec.Command("runc", "--root", b.state, "state", b.id).Output()
		var st specs.State
		if json.Unmarshal(out, &st) == nil && st.Status == specs.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not start: %s", out)
		}
	}
	if out, err := exec.Command("runc", "--root", b.state, "kill", b.id, "KILL").CombinedOutput(); err != nil {
		t.Fatalf("runc kill: %v: %s", err, out)
	}
	err := run.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 128+9 {
		t.Errorf("runc run ended with %v, want exit status 137", err)
	}
}

// TestRuncExecProcess runs ExecProcess's output with `runc exec --process` in a running
// container: another user, its groups, HOME and capabilities.
func TestRuncExecProcess(t *testing.T) {
	t.Parallel()
	b := newRuncBundle(t)
	s := b.writeConfig(t, runtime.Config{Hostname: "exechost", Env: []string{"FOO=container"}, Args: []string{"sleep", "600"}}, SpecOptions{})

	// The container's init keeps runc create's stdio: files, so that nothing waits on a
	// pipe the container holds open.
	logPath := filepath.Join(b.dir, "init.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	runcCmd := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", b.state}, args...)...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Run(); err != nil {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("runc %s: %v\n%s", args[0], err, log)
		}
	}
	runcCmd("create", "--bundle", b.dir, b.id)
	runcCmd("start", b.id)

	p, err := ExecProcess(b.rootfs, &runtime.ExecConfig{User: "alice", Cwd: "/tmp", Env: []string{"BAR=exec"},
		Args: shell(`id; env; pwd; grep ^CapEff /proc/self/status; ulimit -n`)}, []string{"HOSTNAME=" + s.Hostname, "FOO=container"})
	if err != nil {
		t.Fatal(err)
	}
	processPath := filepath.Join(b.dir, "exec.json")
	if err := os.WriteFile(processPath, []byte(specJSON(t, p)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "runc", "--root", b.state, "exec", "--process", processPath, b.id).CombinedOutput()
	t.Logf("exec output:\n%s", out)
	if err != nil {
		t.Fatalf("runc exec: %v", err)
	}
	uid, gid, groups := parseID(t, string(out))
	if uid != "1000(alice)" || gid != "1000(alice)" || !slices.Equal(groups, []string{"29", "50", "1000"}) {
		t.Errorf("exec id: uid %s gid %s groups %v, want alice with 29, 50, 1000", uid, gid, groups)
	}
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for _, want := range []string{
		"HOSTNAME=exechost", "FOO=container", "BAR=exec", "PATH=" + defaultPath,
		"HOME=/home/alice",
		"/tmp",
		"CapEff:\t0000000000000000",
		fmt.Sprint(min(r.Max, 1<<20)),
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("exec output lacks the line %q", want)
		}
	}
}

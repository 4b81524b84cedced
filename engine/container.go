package engine

import (
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images/build"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// Spec is the desired state of a container: what `dutchman run` flags, the API and (later)
// a spec file in the tree say. Its fields follow a Docker Compose service, so that one
// schema serves every door.
type Spec struct {
	Image string `json:"image"`
	// Command replaces the image's Cmd when not nil.
	Command []string `json:"command"`
	// Entrypoint replaces the image's Entrypoint when not nil; an empty, non-nil list
	// clears it (docker run --entrypoint "").
	Entrypoint []string          `json:"entrypoint"`
	Env        []string          `json:"environment,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Restart    string            `json:"restart,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	// Memory is the memory limit in bytes (mem_limit).
	Memory int64 `json:"mem_limit,omitempty"`
	// CPUs limits CPU time (cpus: 1.5 is one and a half CPUs).
	CPUs    float64 `json:"cpus,omitempty"`
	Runtime string  `json:"runtime,omitempty"`
	// StopSignal is sent by stop before SIGKILL (default SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// StopGracePeriod is how long stop waits before SIGKILL (default 10s).
	StopGracePeriod *Duration `json:"stop_grace_period,omitempty"`
	Tty             bool      `json:"tty,omitempty"`
	OpenStdin       bool      `json:"stdin_open,omitempty"`
	// AutoRemove removes the container when it exits (docker run --rm).
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Mounts are the container's volumes, binds and tmpfs mounts, as asked.
	Mounts []volumes.Mount `json:"volumes,omitempty"`
	// Networks are the networks the container joins (none: the default network). A
	// network named "none" (loopback only) or "host" (the host's own) stands alone.
	Networks []network.Request `json:"networks,omitempty"`
	// Ports are the container's ports published on the host.
	Ports []network.Port `json:"ports,omitempty"`
	// PublishAll publishes every port the image exposes, on free host ports (-P).
	PublishAll bool `json:"publish_all,omitempty"`
	// Healthcheck tests the container's health, over the image's HEALTHCHECK.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
	// Build makes the image when the store lacks it (a spec file's build: section).
	Build *build.Options `json:"build,omitempty"`
	// Unprivileged refuses what only root may ask: volumes that the local driver mounts
	// (driver options: a host directory, a disk, which root chose), the host's network,
	// and host ports below 1024. The spec comes from a spec file of a tree whose owner
	// is not root. Not kept: it says where the spec comes from.
	Unprivileged bool `json:"-"`
}

// Duration is a time.Duration written as Go writes it ("10s", "1m30s") in JSON.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Container is the engine's record of one container.
type Container struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Spec    Spec      `json:"spec"`
	// Image is the image's canonical name as resolved at create; ImageDigest and
	// ImageID pin the exact image.
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest"`
	ImageID     string `json:"imageID"`
	Runtime     string `json:"runtime"`
	// Args, Env, WorkingDir and User are the process as it runs: the spec merged with
	// the image's config.
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	User       string   `json:"user"`

	State        State     `json:"state"`
	Pid          int       `json:"pid"`
	ExitCode     int       `json:"exitCode"`
	OOMKilled    bool      `json:"oomKilled"`
	Error        string    `json:"error"`
	StartedAt    time.Time `json:"startedAt"`
	FinishedAt   time.Time `json:"finishedAt"`
	RestartCount int       `json:"restartCount"`
	// ManuallyStopped is set by stop and kill: restart policies leave such a container
	// alone (unless-stopped even across daemon restarts), as Docker does.
	ManuallyStopped bool `json:"manuallyStopped"`
	// Mounts are the spec's mounts resolved at create (volumes named, binds checked)
	// and the anonymous volumes of the image's VOLUME paths.
	Mounts []volumes.Mount `json:"mounts,omitempty"`
	// NetNS is the network namespace the engine made for the container's run, and
	// Endpoints its places on networks (addresses, published ports): what the end of
	// the run takes down, after a daemon restart too.
	NetNS     string             `json:"netns,omitempty"`
	Endpoints []network.Endpoint `json:"endpoints,omitempty"`
	// Healthcheck is the spec's healthcheck merged with the image's at create (nil:
	// none), and Health what its probes found in the current run.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
	Health      *Health      `json:"health,omitempty"`
}

// nameRule is Docker's rule for container names.
var nameRule = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidName checks a container name.
func ValidName(name string) error {
	if !nameRule.MatchString(name) || len(name) > 253 {
		return errdefs.Invalid(fmt.Errorf("invalid container name %q: names match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 253 characters)", name))
	}
	return nil
}

// RestartPolicy is a parsed restart policy.
type RestartPolicy struct {
	Name       string // "no", "on-failure", "always", "unless-stopped"
	MaxRetries int    // on-failure only; 0: no limit
}

// ParseRestartPolicy parses "no", "on-failure[:N]", "always" or "unless-stopped".
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	p := RestartPolicy{Name: name}
	switch name {
	case "", "no":
		p.Name = "no"
	case "always", "unless-stopped":
	case "on-failure":
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return p, errdefs.Invalid(fmt.Errorf("invalid restart policy %q: the retry count must be a number of 0 or more", s))
			}
			p.MaxRetries = n
		}
		return p, nil
	default:
		return p, errdefs.Invalid(fmt.Errorf("invalid restart policy %q: want no, on-failure[:N], always or unless-stopped", s))
	}
	if hasCount {
		return p, errdefs.Invalid(fmt.Errorf("invalid restart policy %q: only on-failure takes a retry count", s))
	}
	return p, nil
}

// minMemory is the smallest memory limit, as Docker's: less cannot start a process.
const minMemory = 6 << 20

// ValidateSpec checks what can be checked of a spec before its image is known.
func ValidateSpec(s *Spec) error { return s.validate() }

// validate checks what can be checked of a spec before its image is known.
func (s *Spec) validate() error {
	if s.Image == "" {
		return errdefs.Invalid(fmt.Errorf("no image given"))
	}
	if _, err := ParseRestartPolicy(s.Restart); err != nil {
		return err
	}
	if s.Memory < 0 || (s.Memory > 0 && s.Memory < minMemory) {
		return errdefs.Invalid(fmt.Errorf("invalid memory limit %d: the minimum is 6MB", s.Memory))
	}
	if n := runtime.NumCPU(); s.CPUs < 0 || s.CPUs > float64(n) || (s.CPUs > 0 && s.CPUs < 0.01) {
		return errdefs.Invalid(fmt.Errorf("invalid cpus %g: the range is 0.01 to %d.00, as there are only %d CPUs available", s.CPUs, n, n))
	}
	if s.StopSignal != "" {
		if _, err := ParseSignal(s.StopSignal); err != nil {
			return err
		}
	}
	if s.WorkingDir != "" && !strings.HasPrefix(s.WorkingDir, "/") {
		return errdefs.Invalid(fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", s.WorkingDir))
	}
	if s.StopGracePeriod != nil && *s.StopGracePeriod < 0 {
		return errdefs.Invalid(fmt.Errorf("invalid stop grace period %s", time.Duration(*s.StopGracePeriod)))
	}
	if err := s.Healthcheck.validate(); err != nil {
		return err
	}
	if err := validateMounts(s.Mounts); err != nil {
		return err
	}
	if err := validateNetworks(s.Networks, s.Ports); err != nil {
		return err
	}
	if s.Unprivileged {
		if err := unprivilegedNetworks(s.Networks, s.Ports); err != nil {
			return err
		}
	}
	if s.AutoRemove {
		if p, _ := ParseRestartPolicy(s.Restart); p.Name != "no" {
			return errdefs.Invalid(fmt.Errorf("a container removed on exit (--rm) cannot have a restart policy (%s)", s.Restart))
		}
	}
	for _, e := range s.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" {
			return errdefs.Invalid(fmt.Errorf("invalid environment variable %q", e))
		}
	}
	return nil
}

// ParseSignal parses a signal given by name (TERM, SIGTERM, sigterm) or number.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.Invalid(fmt.Errorf("invalid signal %q", s))
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errdefs.Invalid(fmt.Errorf("invalid signal %q", s))
}

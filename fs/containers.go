package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// containersDir is containers/: one directory per container, named as the container,
// and the spec files (NAME.yaml) with whatever scratch files editors leave beside them.
func (t *tree) containersDir() *backedDir {
	return t.newBackedDir(t.backing, true,
		func(ctx context.Context) ([]entry, error) {
			cs := t.eng.List()
			out := make([]entry, 0, len(cs))
			for _, c := range cs {
				out = append(out, t.containerEntry(c))
			}
			return out, nil
		},
		func(ctx context.Context, name string) (entry, bool, error) {
			c, err := t.eng.Get(name)
			if err != nil || c.Name != name {
				// Only names: an ID or a prefix of one is not a directory here.
				return entry{}, false, nil
			}
			return t.containerEntry(c), true, nil
		})
}

// containerEntry is the directory of container c. Its inode is that of the container's
// ID, so a container removed and made again under the same name is a new directory.
func (t *tree) containerEntry(c *engine.Container) entry {
	id := c.ID
	return t.dir(c.Name, "containers/"+id, stableTimeout, func() *dirNode { return t.containerDir(id) })
}

// containerDir is containers/NAME/, the live state of the container with ID id.
func (t *tree) containerDir(id string) *dirNode {
	key := "containers/" + id + "/"
	get := func() (*engine.Container, error) { return t.eng.Get(id) }
	logFile := func(which string) func() (string, error) {
		return func() (string, error) { return t.eng.LogFile(id, which) }
	}
	entries := []entry{
		{name: "ctl", mode: syscall.S_IFREG | 0o644, key: key + "ctl", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.containerCtl(id) }},
		t.value("state", key+"state", func(context.Context) ([]byte, error) {
			c, err := get()
			if err != nil {
				return nil, err
			}
			return line(string(c.State)), nil
		}),
		t.value("status.json", key+"status.json", func(context.Context) ([]byte, error) {
			c, err := get()
			if err != nil {
				return nil, err
			}
			s := statusOf(c)
			s.Stale = t.specs.isStale(c.Name)
			return jsonFile(s)
		}),
		t.value("error", key+"error", func(context.Context) ([]byte, error) {
			c, err := get()
			if err != nil {
				return nil, err
			}
			return line(c.Error), nil
		}),
		t.valueOf(valueFixed, "spec.yaml", key+"spec.yaml", func(context.Context) ([]byte, error) {
			c, err := get()
			if err != nil {
				return nil, err
			}
			return compose.RenderService(c.Spec), nil
		}),
		t.valueOf(valueCached, "config.json", key+"config.json", func(ctx context.Context) ([]byte, error) {
			return t.eng.RuntimeSpec(ctx, id)
		}),
		t.stream("logs", key+"logs", logFile("output")),
		t.stream("stdout", key+"stdout", logFile("stdout")),
		t.stream("stderr", key+"stderr", logFile("stderr")),
		t.valueOf(valueSampled, "stats", key+"stats", func(ctx context.Context) ([]byte, error) { return t.containerStats(ctx, id) }),
		t.valueOf(valueSampled, "top", key+"top", func(ctx context.Context) ([]byte, error) { return t.containerTop(ctx, id) }),
		{name: "rootfs", mode: syscall.S_IFDIR | 0o755, key: key + "rootfs", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.newRootfsDir(id, key+"rootfs") }},
	}
	// The names are those of the container's ID for as long as it lives.
	for i := range entries {
		entries[i].timeout = fixedTimeout
	}
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(context.Context) ([]entry, error) {
		if _, err := get(); err != nil {
			return nil, err
		}
		return entries, nil
	}}
}

// jsonFile renders v as an indented JSON file.
func jsonFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// status is a container's status.json: the inspect view, in the tree's snake_case.
type status struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Image        statusImage   `json:"image"`
	State        string        `json:"state"`
	Pid          int           `json:"pid"`
	ExitCode     int           `json:"exit_code"`
	OOMKilled    bool          `json:"oom_killed"`
	Created      time.Time     `json:"created"`
	StartedAt    *time.Time    `json:"started_at"`
	FinishedAt   *time.Time    `json:"finished_at"`
	RestartCount int           `json:"restart_count"`
	Restart      string        `json:"restart"`
	Runtime      string        `json:"runtime"`
	Command      []string      `json:"command"`
	IPAddresses  []string      `json:"ip_addresses"`
	Ports        []string      `json:"ports"`
	Mounts       []statusMount `json:"mounts"`
	Health       *string       `json:"health"`
	Stale        bool          `json:"stale"`
	Error        string        `json:"error"`
}

// statusMount is one of a container's mounts: a volume's name, a bind's host path (or
// its path in the tree, in_tree).
type statusMount struct {
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
	InTree   bool   `json:"in_tree,omitempty"`
}

type statusImage struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	ID     string `json:"id"`
}

func statusOf(c *engine.Container) *status {
	s := &status{
		ID: c.ID, Name: c.Name, Image: statusImage{Ref: c.Image, Digest: c.ImageDigest, ID: c.ImageID},
		State: string(c.State), Pid: c.Pid, ExitCode: c.ExitCode, OOMKilled: c.OOMKilled,
		Created: c.Created, RestartCount: c.RestartCount, Restart: c.Spec.Restart, Runtime: c.Runtime,
		Command: c.Args, IPAddresses: []string{}, Ports: []string{}, Mounts: []statusMount{}, Error: c.Error,
	}
	for _, ep := range c.Endpoints {
		s.IPAddresses = append(s.IPAddresses, ep.IP)
		for _, p := range ep.Ports {
			s.Ports = append(s.Ports, p.String())
		}
	}
	for _, m := range c.Mounts {
		s.Mounts = append(s.Mounts, statusMount{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, InTree: m.InTree})
	}
	if s.Restart == "" {
		s.Restart = "no"
	}
	if !c.StartedAt.IsZero() {
		s.StartedAt = &c.StartedAt
	}
	if c.Health != nil {
		s.Health = &c.Health.Status
	}
	if !c.FinishedAt.IsZero() {
		s.FinishedAt = &c.FinishedAt
	}
	return s
}

// containerVerbs are the verbs a container's ctl takes in each state.
var containerVerbs = map[engine.State][]string{
	engine.Created:    {"start", "rm"},
	engine.Starting:   {"stop [SECONDS]", "kill [SIGNAL]", "rm -f"},
	engine.Running:    {"stop [SECONDS]", "restart [SECONDS]", "kill [SIGNAL]", "pause", "rm -f"},
	engine.Stopping:   {"kill [SIGNAL]", "rm -f"},
	engine.Stopped:    {"start", "restart [SECONDS]", "rm"},
	engine.Restarting: {"stop [SECONDS]", "kill [SIGNAL]", "rm -f"},
	engine.Paused:     {"unpause", "stop [SECONDS]", "kill [SIGNAL]", "rm -f"},
}

// killWait bounds how long kill waits for the exit of a killed container.
const killWait = 10 * time.Second

// allContainerVerbs is every verb, for the message about an unknown one.
const allContainerVerbs = "start, stop [SECONDS], restart [SECONDS], kill [SIGNAL], pause, unpause, rm [-f]"

func (t *tree) containerCtl(id string) *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(ctx context.Context) string {
			c, err := t.eng.Get(id)
			if err != nil {
				return ""
			}
			var b strings.Builder
			for _, v := range containerVerbs[c.State] {
				b.WriteString(v + "\n")
			}
			return b.String()
		},
		run: func(ctx context.Context, verb string, args []string) error {
			return t.containerVerb(ctx, id, verb, args)
		},
		failed: func(_ string, err error) { t.eng.ReportError(id, err) },
	}
}

// containerVerb runs one line written to a container's ctl.
func (t *tree) containerVerb(ctx context.Context, id, verb string, args []string) error {
	c, err := t.eng.Get(id)
	if err != nil {
		return err
	}
	tooMany := func(max int) error {
		if len(args) > max {
			return errdefs.Invalid(fmt.Errorf("%s: too many arguments: %q", verb, strings.Join(args, " ")))
		}
		return nil
	}
	seconds := func() (*time.Duration, error) {
		if err := tooMany(1); err != nil || len(args) == 0 {
			return nil, err
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return nil, errdefs.Invalid(fmt.Errorf("%s: %q is not a number of seconds", verb, args[0]))
		}
		d := time.Duration(n) * time.Second
		return &d, nil
	}
	switch verb {
	case "start":
		if err := tooMany(0); err != nil {
			return err
		}
		return t.eng.Start(ctx, id, engine.StartOptions{})
	case "stop", "restart":
		d, err := seconds()
		if err != nil {
			return err
		}
		if verb == "stop" {
			return t.eng.Stop(ctx, id, d)
		}
		return t.eng.Restart(ctx, id, d)
	case "kill":
		if err := tooMany(1); err != nil {
			return err
		}
		sig := syscall.SIGKILL
		if len(args) == 1 {
			if sig, err = engine.ParseSignal(args[0]); err != nil {
				return err
			}
		}
		if err := t.eng.Kill(ctx, id, sig); err != nil || sig != syscall.SIGKILL {
			return err
		}
		// SIGKILL cannot be caught: the write returns with the exit recorded, so that
		// the next read of state shows it.
		ctx, cancel := context.WithTimeout(ctx, killWait)
		defer cancel()
		_, err := t.eng.Wait(ctx, id, engine.WaitNotRunning)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	case "pause", "unpause":
		if err := tooMany(0); err != nil {
			return err
		}
		if verb == "pause" {
			return t.eng.Pause(ctx, id)
		}
		return t.eng.Unpause(ctx, id)
	case "rm":
		force, err := rmForce(args)
		if err != nil {
			return err
		}
		return t.eng.Remove(ctx, id, engine.RemoveOptions{Force: force})
	}
	return errdefs.Invalid(fmt.Errorf("container %s: unknown verb %q: the verbs are %s", c.Name, verb, allContainerVerbs))
}

// containerStats is a container's stats file: its resource use now, zeros when it does
// not run.
func (t *tree) containerStats(ctx context.Context, id string) ([]byte, error) {
	c, err := t.eng.Get(id)
	if err != nil {
		return nil, err
	}
	type stats struct {
		Running     bool    `json:"running"`
		CPUSeconds  float64 `json:"cpu_seconds"`
		MemoryBytes uint64  `json:"memory_bytes"`
		MemoryLimit uint64  `json:"memory_limit"`
		Pids        uint64  `json:"pids"`
	}
	var out stats
	if c.State == engine.Running || c.State == engine.Paused {
		st, err := t.eng.Stats(ctx, id)
		if err != nil && !errors.As(err, new(*engine.StateError)) {
			return nil, err
		}
		if st != nil {
			out = stats{Running: true, CPUSeconds: float64(st.CPUNanos) / 1e9, MemoryBytes: st.MemoryBytes,
				MemoryLimit: st.MemoryLimit, Pids: st.Pids}
		}
	}
	return jsonFile(out)
}

// containerTop is a container's top file: its processes, as ps shows them; only the
// heading when it does not run.
func (t *tree) containerTop(ctx context.Context, id string) ([]byte, error) {
	c, err := t.eng.Get(id)
	if err != nil {
		return nil, err
	}
	var ps []engine.Process
	if c.State == engine.Running || c.State == engine.Paused {
		ps, err = t.eng.Top(ctx, id)
		if err != nil && !errors.As(err, new(*engine.StateError)) {
			return nil, err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%7s %7s %5s %1s %8s %s\n", "PID", "PPID", "UID", "S", "TIME", "COMMAND")
	for _, p := range ps {
		secs := p.CPUTicks / 100 // USER_HZ
		fmt.Fprintf(&b, "%7d %7d %5d %1s %02d:%02d:%02d %s\n", p.PID, p.PPID, p.UID, p.State,
			secs/3600, secs/60%60, secs%60, p.Command)
	}
	return []byte(b.String()), nil
}

// rmForce reads the options of an rm verb: none, or -f (--force).
func rmForce(args []string) (bool, error) {
	for _, a := range args {
		if a != "-f" && a != "--force" {
			return false, errdefs.Invalid(fmt.Errorf("rm: unknown option %q (rm takes -f)", a))
		}
	}
	return len(args) > 0, nil
}

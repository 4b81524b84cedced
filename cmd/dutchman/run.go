package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// createFlags are the flags run and create share.
type createFlags struct {
	name, workdir, user, restart, memory, entrypoint, hostname string
	stopSignal, runtime, pull, platform                        string
	env, envFiles, labels                                      []string
	volumes, mounts, tmpfs                                     []string
	publish, networks, aliases                                 []string
	ip                                                         string
	publishAll                                                 bool
	healthCmd                                                  string
	healthInterval, healthTimeout, healthStart, healthStartInt time.Duration
	healthRetries                                              int
	noHealthcheck                                              bool
	cpus                                                       float64
	stopTimeout                                                int
	rm, interactive, tty                                       bool
}

func addCreateFlags(cmd *cobra.Command, f *createFlags) {
	fl := cmd.Flags()
	fl.SetInterspersed(false) // flags after the image belong to the command
	fl.StringVar(&f.name, "name", "", "name the container")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to pass this shell's)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user (name|uid[:group|gid])")
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.StringVar(&f.restart, "restart", "", "restart policy: no, on-failure[:N], always, unless-stopped")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 64m, 1g)")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU limit (e.g. 0.5)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep standard input open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal")
	fl.StringVar(&f.hostname, "hostname", "", "the container's host name")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "set a label (KEY=VALUE)")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "mount a volume or a host path: NAME:/path, /host/path:/path[:ro], or /path for a new anonymous volume")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount, long form: type=bind|volume|tmpfs,source=...,target=...[,readonly]")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs: /path[:size=64m,mode=1777]")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (a free host port if none)")
	fl.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish every port the image exposes, on free host ports")
	fl.StringArrayVar(&f.networks, "network", nil, "join a network (repeatable), or none, or host (default: bridge)")
	fl.StringVar(&f.ip, "ip", "", "the container's IPv4 address on its first network")
	fl.StringArrayVar(&f.aliases, "network-alias", nil, "another name the container has on its networks")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (default SIGTERM)")
	fl.IntVar(&f.stopTimeout, "stop-timeout", -1, "seconds stop waits before SIGKILL (default 10)")
	fl.StringVar(&f.runtime, "runtime", "", "runtime: oci, vm or auto")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	fl.StringVar(&f.platform, "platform", "", "platform to pull (os/arch[/variant])")
	fl.StringVar(&f.healthCmd, "health-cmd", "", "command that tests the container's health (run by /bin/sh -c)")
	fl.DurationVar(&f.healthInterval, "health-interval", 0, "time between health probes (default 30s)")
	fl.DurationVar(&f.healthTimeout, "health-timeout", 0, "time a health probe may take (default 30s)")
	fl.DurationVar(&f.healthStart, "health-start-period", 0, "time to start in, whose failed probes do not count")
	fl.DurationVar(&f.healthStartInt, "health-start-interval", 0, "time between probes in the start period (default 5s)")
	fl.IntVar(&f.healthRetries, "health-retries", 0, "failed probes in a row that make the container unhealthy (default 3)")
	fl.BoolVar(&f.noHealthcheck, "no-healthcheck", false, "disable the image's HEALTHCHECK")
}

// healthcheck is what the --health flags ask, or nil.
func (f *createFlags) healthcheck(cmd *cobra.Command) *engine.Healthcheck {
	if f.noHealthcheck {
		return &engine.Healthcheck{Disable: true}
	}
	h := &engine.Healthcheck{Retries: f.healthRetries}
	set := f.healthRetries != 0
	if f.healthCmd != "" {
		h.Test, set = []string{"CMD-SHELL", f.healthCmd}, true
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		to   **engine.Duration
	}{
		{"health-interval", f.healthInterval, &h.Interval}, {"health-timeout", f.healthTimeout, &h.Timeout},
		{"health-start-period", f.healthStart, &h.StartPeriod}, {"health-start-interval", f.healthStartInt, &h.StartInterval},
	} {
		if cmd.Flags().Changed(d.flag) {
			v := engine.Duration(d.v)
			*d.to, set = &v, true
		}
	}
	if !set {
		return nil
	}
	return h
}

// spec turns the flags and arguments into a container spec.
func (f *createFlags) spec(cmd *cobra.Command, args []string) (engine.Spec, error) {
	s := engine.Spec{
		Image: args[0], WorkingDir: f.workdir, User: f.user, Restart: f.restart, Hostname: f.hostname,
		CPUs: f.cpus, Runtime: f.runtime, StopSignal: f.stopSignal, Tty: f.tty, OpenStdin: f.interactive,
		AutoRemove: f.rm,
	}
	if len(args) > 1 {
		s.Command = args[1:]
	}
	if cmd.Flags().Changed("entrypoint") {
		s.Entrypoint = []string{f.entrypoint}
		if f.entrypoint == "" {
			s.Entrypoint = []string{}
		}
	}
	if f.memory != "" {
		n, err := parseBytes(f.memory)
		if err != nil {
			return s, err
		}
		s.Memory = n
	}
	if f.stopTimeout >= 0 {
		d := engine.Duration(time.Duration(f.stopTimeout) * time.Second)
		s.StopGracePeriod = &d
	}
	for _, file := range f.envFiles {
		vars, err := readEnvFile(file)
		if err != nil {
			return s, err
		}
		s.Env = append(s.Env, vars...)
	}
	for _, e := range f.env {
		s.Env = append(s.Env, expandEnv(e)...)
	}
	for _, v := range f.volumes {
		m, err := volumes.ParseVolume(v)
		if err != nil {
			return s, err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range f.mounts {
		m, err := volumes.ParseMount(v)
		if err != nil {
			return s, err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range f.tmpfs {
		m, err := volumes.ParseTmpfs(v)
		if err != nil {
			return s, err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, p := range f.publish {
		ports, err := network.ParsePort(p)
		if err != nil {
			return s, err
		}
		s.Ports = append(s.Ports, ports...)
	}
	s.PublishAll = f.publishAll
	s.Healthcheck = f.healthcheck(cmd)
	for _, n := range f.networks {
		s.Networks = append(s.Networks, network.Request{Network: n})
	}
	if f.ip != "" || len(f.aliases) > 0 {
		if len(s.Networks) == 0 {
			s.Networks = []network.Request{{Network: network.Default}}
		}
		s.Networks[0].IP = f.ip
		for i := range s.Networks {
			s.Networks[i].Aliases = f.aliases
		}
	}
	if len(f.labels) > 0 {
		s.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			s.Labels[k] = v
		}
	}
	return s, nil
}

// expandEnv reads KEY=VALUE as is, and KEY alone as this shell's value (dropped if unset).
func expandEnv(e string) []string {
	if strings.Contains(e, "=") {
		return []string{e}
	}
	if v, ok := os.LookupEnv(e); ok {
		return []string{e + "=" + v}
	}
	return nil
}

func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, expandEnv(line)...)
	}
	return out, sc.Err()
}

// parseBytes reads a size as docker does: a number with an optional unit b, k, m, g, t
// (powers of 1024).
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	units := map[byte]int64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}
	t = strings.TrimSuffix(t, "b")
	if t == "" {
		return 0, errdefs.Invalid(fmt.Errorf("invalid size %q", s))
	}
	if m, ok := units[t[len(t)-1]]; ok {
		mult, t = m, t[:len(t)-1]
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, errdefs.Invalid(fmt.Errorf("invalid size %q: want a number with an optional unit (b, k, m, g)", s))
	}
	return int64(n * float64(mult)), nil
}

// createContainer creates a container, pulling its image first if it is missing (or
// always, with --pull always), as docker run does.
func (c *cli) createContainer(ctx context.Context, cl *api.Client, f *createFlags, spec engine.Spec, stderr io.Writer) (*api.Container, error) {
	switch f.pull {
	case "always":
		if err := pull(ctx, cl, stderr, spec.Image, f.platform, false); err != nil {
			return nil, err
		}
	case "missing", "never":
	default:
		return nil, errdefs.Invalid(fmt.Errorf("invalid --pull %q: want missing, always or never", f.pull))
	}
	ct, err := cl.ContainerCreate(ctx, f.name, spec)
	if err == nil || f.pull != "missing" || !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "no such image") {
		return ct, err
	}
	fmt.Fprintf(stderr, "Unable to find image '%s' locally\n", spec.Image)
	if err := pull(ctx, cl, stderr, spec.Image, f.platform, false); err != nil {
		return nil, err
	}
	return cl.ContainerCreate(ctx, f.name, spec)
}

func newRunCommand(c *cli) *cobra.Command {
	var f createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and start a container",
		Long: `Create a container from IMAGE (pulled first if it is missing) and start it. Without -d the
command stays attached to the container's output, and to its input with -i, and exits
with the container's exit code; -t gives it a terminal. Errors exit 125, as docker run;
a command that cannot be found exits 127, one that cannot be run 126.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(cmd, args)
			if err != nil {
				return runError(err)
			}
			cl, err := c.client()
			if err != nil {
				return runError(err)
			}
			ctx := cmd.Context()
			ct, err := c.createContainer(ctx, cl, &f, spec, cmd.ErrOrStderr())
			if err != nil {
				return runError(err)
			}
			if detach {
				if err := cl.ContainerStart(ctx, ct.ID); err != nil {
					return runError(err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), ct.ID)
				return nil
			}
			code, err := c.attachStreams(ctx, cl, ct.ID, f.interactive, f.tty, true)
			if err != nil {
				return runError(err)
			}
			if code != 0 {
				return &exitError{code: code, err: fmt.Errorf("container %s exited with code %d", ct.Name, code), silent: true}
			}
			return nil
		},
	}
	addCreateFlags(cmd, &f)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and print the container's ID")
	return cmd
}

// runError gives errors docker run's exit codes.
func runError(err error) error {
	code := 125
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec"):
		code = 127
	case strings.Contains(msg, "permission denied") && strings.Contains(msg, "exec"):
		code = 126
	}
	return &exitError{code: code, err: err}
}

// terminalStreams connects this process's streams for a container's process: input if
// stdin; with tty, this terminal in raw mode (when input is one) and its size, now and on
// every change (after delay: an exec's terminal exists a moment after the stream opens).
// done restores the terminal.
func terminalStreams(stdin, tty bool, delay time.Duration) (o api.StreamOptions, done func(), err error) {
	o = api.StreamOptions{Stdout: os.Stdout, Stderr: os.Stderr}
	var undo []func()
	done = func() {
		for _, f := range undo {
			f()
		}
	}
	if stdin {
		o.Stdin = os.Stdin
	}
	if !tty {
		return o, done, nil
	}
	if stdin && term.IsTerminal(int(os.Stdin.Fd())) {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err != nil {
			return o, done, err
		}
		undo = append(undo, func() { term.Restore(int(os.Stdin.Fd()), old) })
	}
	size := func() (api.ResizeFrame, bool) {
		w, h, err := term.GetSize(int(os.Stdout.Fd()))
		return api.ResizeFrame{Rows: uint16(h), Cols: uint16(w)}, err == nil
	}
	if sz, ok := size(); ok {
		o.Size = &sz
	}
	resize := make(chan api.ResizeFrame, 4)
	o.Resize = resize
	send := func() {
		if sz, ok := size(); ok {
			select {
			case resize <- sz:
			default:
			}
		}
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	undo = append(undo, func() { signal.Stop(winch) })
	go func() {
		time.Sleep(delay)
		send()
		for range winch {
			send()
		}
	}()
	return o, done, nil
}

// attachStreams connects this terminal (or these pipes) to a container: starting it
// (start) or attaching to it running, and returns its exit code.
func (c *cli) attachStreams(ctx context.Context, cl *api.Client, id string, stdin, tty, start bool) (int, error) {
	o, done, err := terminalStreams(stdin, tty, 0)
	defer done()
	if err != nil {
		return 0, err
	}
	if !tty {
		// Without a terminal, Ctrl-C and termination signals go to the container, as
		// docker run's signal proxy does.
		c.proxy(func(sig os.Signal) {
			cl.ContainerKill(context.Background(), id, strconv.Itoa(int(sig.(syscall.Signal))))
		})
		defer c.proxy(nil)
	}
	if start {
		return cl.ContainerStartAttach(ctx, id, o)
	}
	return cl.ContainerAttach(ctx, id, o)
}

// execStreams runs a process in a container with this terminal's streams.
func (c *cli) execStreams(ctx context.Context, cl *api.Client, id string, req api.ExecRequest, stdin bool) (int, error) {
	o, done, err := terminalStreams(stdin, req.Tty, 100*time.Millisecond)
	defer done()
	if err != nil {
		return 0, err
	}
	return cl.ContainerExec(ctx, id, req, o)
}

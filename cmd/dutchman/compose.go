package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// composeFlags are docker compose's global flags: which project.
type composeFlags struct {
	files    []string
	name     string
	profiles []string
	dir      string
}

// options are the flags as the loader takes them: paths made absolute (the daemon
// reads them), and this shell's environment for interpolation.
func (f *composeFlags) options() (compose.Options, error) {
	o := compose.Options{Name: f.name, Profiles: f.profiles, Env: map[string]string{}}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			o.Env[k] = v
		}
	}
	for _, file := range f.files {
		if file == "-" {
			return o, errors.New("-f -: a project read from standard input is not supported; name a file")
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return o, err
		}
		o.Files = append(o.Files, abs)
	}
	dir := f.dir
	if dir == "" && len(o.Files) == 0 {
		dir = "."
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return o, err
		}
		o.WorkingDir = abs
	}
	return o, nil
}

// load reads the project here, as this user: for its name, services and config.
func (f *composeFlags) load(ctx context.Context) (*types.Project, error) {
	o, err := f.options()
	if err != nil {
		return nil, err
	}
	return compose.Load(ctx, o)
}

// projectName is the project's name: -p, or the loaded project's.
func (f *composeFlags) projectName(ctx context.Context) (string, error) {
	if f.name != "" {
		return f.name, nil
	}
	p, err := f.load(ctx)
	if err != nil {
		return "", err
	}
	return p.Name, nil
}

// connect is the daemon's client and the project's name, which most commands need.
func (f *composeFlags) connect(ctx context.Context, c *cli) (*api.Client, string, error) {
	cl, err := c.client()
	if err != nil {
		return nil, "", err
	}
	name, err := f.projectName(ctx)
	return cl, name, err
}

func newComposeCommand(c *cli) *cobra.Command {
	f := &composeFlags{}
	cmd := &cobra.Command{
		Use:   "compose [-f FILE]... [-p NAME] [--profile P] COMMAND",
		Short: "Run multi-container projects from compose files",
		Long: `Runs a project of compose files as Docker Compose does. Without -f, the project is
compose.yaml (or compose.yml, docker-compose.yaml, docker-compose.yml) in this directory.`,
	}
	// The project's flags come before the subcommand, as docker compose takes them, and
	// are the compose command's own: logs -f is --follow (the root traverses them).
	pf := cmd.Flags()
	pf.StringArrayVarP(&f.files, "file", "f", nil, "compose file (more than one: merged in order)")
	pf.StringVarP(&f.name, "project-name", "p", "", "project name (default: name: in the file, or the directory's name)")
	pf.StringArrayVar(&f.profiles, "profile", nil, "enable a profile")
	pf.StringVar(&f.dir, "project-directory", "", "the project's directory (default: the first file's)")
	cmd.AddCommand(
		newComposeUpCommand(c, f),
		newComposeDownCommand(c, f),
		newComposePsCommand(c, f),
		newComposeLogsCommand(c, f),
		newComposeConfigCommand(f),
		newComposeVerbCommand(c, f, "start", "Start the project's stopped containers"),
		newComposeVerbCommand(c, f, "stop", "Stop the project's containers"),
		newComposeVerbCommand(c, f, "restart", "Restart the project's containers"),
		newComposePullCommand(c, f),
		newComposeBuildCommand(c, f),
		newComposeExecCommand(c, f),
		newComposeLsCommand(c),
	)
	return cmd
}

// printStep prints a step of up or down as docker compose does.
func printStep(w io.Writer) func(compose.Progress) {
	return func(p compose.Progress) {
		fmt.Fprintf(w, " %s %s  %s\n", p.Kind, p.Name, p.Status)
	}
}

func newComposeUpCommand(c *cli, f *composeFlags) *cobra.Command {
	var detach, build, noBuild bool
	cmd := &cobra.Command{
		Use:   "up [-d] [SERVICE...]",
		Short: "Create and start the project's containers (and networks, volumes)",
		Long: `Brings the project up: networks and volumes made, missing images pulled (or built, for
services with a build: section), containers made and started in dependency order. Services whose configuration changed since the last up
are recreated; the others keep running. Without -d, follows the project's output until
Ctrl-C, which stops it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			p, err := compose.Load(cmd.Context(), o)
			if err != nil {
				return err
			}
			if build && noBuild {
				return errors.New("--build and --no-build: choose one")
			}
			// What is built is built here, with BuildKit's progress (the services named
			// and those they depend on): the daemon builds nothing.
			if !noBuild {
				sel := p
				if len(args) > 0 {
					if sel, err = p.WithSelectedServices(args, types.IncludeDependencies); err != nil {
						return err
					}
				}
				if err := composeBuild(cmd.Context(), cl, sel, !build, false); err != nil {
					return err
				}
			}
			// The daemon loads it again (and later, on save): under the name found here.
			o.Name = p.Name
			req := api.ComposeUpRequest{Options: o, Services: args, UpBuilds: compose.UpBuilds{NoBuild: true}}
			if err := cl.ComposeUp(cmd.Context(), req, printStep(cmd.ErrOrStderr())); err != nil {
				return err
			}
			if detach {
				return nil
			}
			err = followProject(cmd.Context(), cl, p.Name, args, true, cmd.OutOrStdout())
			if errors.Is(err, context.Canceled) {
				fmt.Fprintln(cmd.ErrOrStderr(), "Stopping...")
				return cl.ComposeStop(context.WithoutCancel(cmd.Context()), p.Name, args)
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "leave the containers running in the background")
	cmd.Flags().BoolVar(&build, "build", false, "build the images of services with a build: section, even if they are here")
	cmd.Flags().BoolVar(&noBuild, "no-build", false, "build no image, even if it is missing")
	return cmd
}

func newComposeBuildCommand(c *cli, f *composeFlags) *cobra.Command {
	var noCache bool
	cmd := &cobra.Command{
		Use:   "build [--no-cache] [SERVICE...]",
		Short: "Build the images of the project's services that have a build: section",
		Long: `Builds, with BuildKit, the image of each service that has a build: section (or of those
named), and tags it with the service's image: or PROJECT-SERVICE.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			p, err := f.load(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) > 0 {
				if p, err = p.WithSelectedServices(args); err != nil {
					return err
				}
			}
			return composeBuild(cmd.Context(), cl, p, false, noCache)
		},
	}
	cmd.Flags().BoolVar(&noCache, "no-cache", false, "run every step again, without the cache")
	return cmd
}

// composeBuild builds the images of p's services with a build: section: all of them, or
// only those missing (and those of pull_policy: build).
func composeBuild(ctx context.Context, cl *api.Client, p *types.Project, missing, noCache bool) error {
	builds, err := compose.Builds(p, compose.LoadOptions{})
	if err == nil && missing {
		builds, err = compose.Missing(ctx, builds, func(ctx context.Context, image string) error {
			_, err := cl.ImageInspect(ctx, image)
			return err
		})
	}
	if err != nil {
		return err
	}
	for _, b := range builds {
		b.Options.NoCache = b.Options.NoCache || noCache
		if _, err := runBuild(ctx, cl, b.Options, progressui.AutoMode); err != nil {
			return fmt.Errorf("service %s: %w", b.Service, err)
		}
	}
	return nil
}

func newComposeDownCommand(c *cli, f *composeFlags) *cobra.Command {
	var vols bool
	cmd := &cobra.Command{
		Use:   "down [-v]",
		Short: "Stop and remove the project's containers and networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, name, err := f.connect(cmd.Context(), c)
			if err != nil {
				return err
			}
			return cl.ComposeDown(cmd.Context(), api.ComposeDownRequest{Name: name, Volumes: vols}, printStep(cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().BoolVarP(&vols, "volumes", "v", false, "remove the project's named volumes too")
	return cmd
}

// projectContainers lists the containers of project name (of services, if any named).
func projectContainers(ctx context.Context, cl *api.Client, name string, services []string) ([]*api.Container, error) {
	list, err := cl.ContainerList(ctx, true)
	if err != nil {
		return nil, err
	}
	var out []*api.Container
	for _, ct := range list {
		if ct.Spec.Labels[compose.LabelProject] != name {
			continue
		}
		if len(services) > 0 && !slices.Contains(services, ct.Spec.Labels[compose.LabelService]) {
			continue
		}
		out = append(out, ct)
	}
	slices.SortFunc(out, func(a, b *api.Container) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func newComposePsCommand(c *cli, f *composeFlags) *cobra.Command {
	var all, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [SERVICE...]",
		Short: "List the project's containers",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, name, err := f.connect(cmd.Context(), c)
			if err != nil {
				return err
			}
			list, err := projectContainers(cmd.Context(), cl, name, args)
			if err != nil {
				return err
			}
			if !all {
				list = slices.DeleteFunc(list, func(ct *api.Container) bool { return !ct.State.Live() })
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return printJSON(out, list)
			case "":
			default:
				return fmt.Errorf("unknown format %q (want json)", format)
			}
			if quiet {
				for _, ct := range list {
					fmt.Fprintln(out, ct.ID)
				}
				return nil
			}
			tw := table(out)
			row(tw, "NAME", "IMAGE", "SERVICE", "STATUS", "PORTS")
			for _, ct := range list {
				var ports []string
				for _, ep := range ct.Endpoints {
					for _, p := range ep.Ports {
						ports = append(ports, p.String())
					}
				}
				row(tw, ct.Name, images.FamiliarName(ct.Image), ct.Spec.Labels[compose.LabelService], status(ct), strings.Join(ports, ", "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also stopped containers")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only IDs")
	cmd.Flags().StringVar(&format, "format", "", "json")
	return cmd
}

func newComposeLogsCommand(c *cli, f *composeFlags) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] [SERVICE...]",
		Short: "Show the project's output, each line prefixed with its container",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, name, err := f.connect(cmd.Context(), c)
			if err != nil {
				return err
			}
			err = followProject(cmd.Context(), cl, name, args, follow, cmd.OutOrStdout())
			if errors.Is(err, context.Canceled) {
				return nil // Ctrl-C ends -f
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	return cmd
}

// followProject prints the output of project name's containers, each line prefixed
// "web-1  | " as docker compose does; with follow, until the containers stop or ctx
// ends.
func followProject(ctx context.Context, cl *api.Client, name string, services []string, follow bool, w io.Writer) error {
	list, err := projectContainers(ctx, cl, name, services)
	if err != nil {
		return err
	}
	width := 0
	for _, ct := range list {
		width = max(width, len(strings.TrimPrefix(ct.Name, name+"-")))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(list))
	for i, ct := range list {
		prefix := fmt.Sprintf("%-*s | ", width, strings.TrimPrefix(ct.Name, name+"-"))
		wg.Go(func() {
			pw := &prefixWriter{w: w, mu: &mu, prefix: prefix}
			errs[i] = cl.ContainerLogs(ctx, ct.ID, api.LogsOptions{Follow: follow, Tail: "all"}, pw, pw)
			pw.flush()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// prefixWriter writes whole lines, each with a prefix, to a writer shared with others.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.mu.Unlock()
		p.buf = nil
	}
}

func newComposeConfigCommand(f *composeFlags) *cobra.Command {
	var format string
	var services bool
	cmd := &cobra.Command{
		Use:   "config [--services] [--format yaml|json]",
		Short: "Print the project as loaded: merged, interpolated, normalised",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.load(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if services {
				for _, s := range p.ServiceNames() {
					fmt.Fprintln(out, s)
				}
				return nil
			}
			var b []byte
			switch format {
			case "yaml", "":
				b, err = p.MarshalYAML()
			case "json":
				b, err = p.MarshalJSON()
			default:
				return fmt.Errorf("unknown format %q (want yaml or json)", format)
			}
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "yaml", "yaml or json")
	cmd.Flags().BoolVar(&services, "services", false, "print the services' names only")
	return cmd
}

func newComposeVerbCommand(c *cli, f *composeFlags, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " [SERVICE...]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, name, err := f.connect(cmd.Context(), c)
			if err != nil {
				return err
			}
			// Through the daemon, in dependency order, which remembers a whole project
			// stopped (its re-applies then start nothing).
			switch verb {
			case "stop":
				err = cl.ComposeStop(cmd.Context(), name, args)
			case "start":
				err = cl.ComposeStart(cmd.Context(), name, args)
			case "restart":
				if err = cl.ComposeStop(cmd.Context(), name, args); err == nil {
					err = cl.ComposeStart(cmd.Context(), name, args)
				}
			}
			if err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), " Project %s  %s\n", name, map[string]string{"stop": "Stopped", "start": "Started", "restart": "Restarted"}[verb])
			}
			return err
		},
	}
}

func newComposePullCommand(c *cli, f *composeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pull [SERVICE...]",
		Short: "Pull the images of the project's services",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			p, err := f.load(cmd.Context())
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, name := range p.ServiceNames() {
				s := p.Services[name]
				// Images with a build: section are built (compose build), not pulled.
				if (len(args) > 0 && !slices.Contains(args, name)) || s.Image == "" || s.Build != nil || seen[s.Image] {
					continue
				}
				seen[s.Image] = true
				fmt.Fprintf(cmd.ErrOrStderr(), " Image %s  Pulling\n", s.Image)
				if _, err := cl.ImagePull(cmd.Context(), s.Image, "", nil); err != nil {
					return fmt.Errorf("service %s: %w", name, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), " Image %s  Pulled\n", s.Image)
			}
			return nil
		},
	}
}

func newComposeExecCommand(c *cli, f *composeFlags) *cobra.Command {
	var tty, noTTY bool
	var index int
	var env []string
	var user, workdir string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] SERVICE COMMAND [ARG...]",
		Short: "Run a command in a running container of a service",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, name, err := f.connect(cmd.Context(), c)
			if err != nil {
				return err
			}
			list, err := projectContainers(cmd.Context(), cl, name, args[:1])
			if err != nil {
				return err
			}
			var target *api.Container
			for _, ct := range list {
				if ct.Spec.Labels[compose.LabelNumber] == fmt.Sprint(index) {
					target = ct
				}
			}
			if target == nil {
				return fmt.Errorf("service %s has no container number %d in project %s", args[0], index, name)
			}
			// As docker compose: a terminal when this is one, unless -T.
			useTTY := !noTTY && (tty || isTerminal(os.Stdin))
			return c.runExec(cmd.Context(), cl, target.ID, api.ExecRequest{Args: args[1:], User: user, WorkingDir: workdir, Tty: useTTY}, env, true)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&noTTY, "no-TTY", "T", false, "no terminal")
	fl.BoolVarP(&tty, "tty", "t", false, "a terminal")
	fl.IntVar(&index, "index", 1, "which replica")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable")
	fl.StringVarP(&user, "user", "u", "", "user (name|uid[:group|gid])")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory")
	return cmd
}

func newComposeLsCommand(c *cli) *cobra.Command {
	var all bool
	var format string
	cmd := &cobra.Command{
		Use:   "ls [-a]",
		Short: "List the projects: those brought up, and any that have containers",
		Long: `Lists the projects the daemon keeps up (re-applying them when their files change)
and any other project that has containers. ERROR is the last re-apply's failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			recs, err := cl.ComposeProjects(cmd.Context())
			if err != nil {
				return err
			}
			list, err := cl.ContainerList(cmd.Context(), true)
			if err != nil {
				return err
			}
			type project struct {
				Name    string `json:"name"`
				Running int    `json:"running"`
				Total   int    `json:"total"`
				Files   string `json:"configFiles"`
				Error   string `json:"error,omitempty"`
			}
			projects := map[string]*project{}
			get := func(name string) *project {
				p := projects[name]
				if p == nil {
					p = &project{Name: name}
					projects[name] = p
				}
				return p
			}
			for _, r := range recs {
				p := get(r.Name)
				p.Error = r.Error
				p.Files = strings.Join(r.Options.Files, ",")
				if p.Files == "" {
					p.Files = r.Options.WorkingDir
				}
			}
			for _, ct := range list {
				name := ct.Spec.Labels[compose.LabelProject]
				if name == "" {
					continue
				}
				p := get(name)
				p.Total++
				if ct.State.Live() {
					p.Running++
				}
				if p.Files == "" {
					p.Files = ct.Spec.Labels[compose.LabelConfigFiles]
				}
			}
			var out []*project
			for _, p := range projects {
				if all || p.Running > 0 || slices.ContainsFunc(recs, func(r compose.Record) bool { return r.Name == p.Name }) {
					out = append(out, p)
				}
			}
			slices.SortFunc(out, func(a, b *project) int { return strings.Compare(a.Name, b.Name) })
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := table(cmd.OutOrStdout())
			row(tw, "NAME", "STATUS", "CONFIG FILES", "ERROR")
			for _, p := range out {
				st := fmt.Sprintf("running(%d)", p.Running)
				if p.Running < p.Total {
					st += fmt.Sprintf(", exited(%d)", p.Total-p.Running)
				}
				row(tw, p.Name, st, p.Files, p.Error)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also projects that are stopped")
	cmd.Flags().StringVar(&format, "format", "", "json")
	return cmd
}

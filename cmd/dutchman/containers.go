package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

func newCreateCommand(c *cli) *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a container without starting it",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(cmd, args)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ct, err := c.createContainer(cmd.Context(), cl, &f, spec, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ct.ID)
			return nil
		},
	}
	addCreateFlags(cmd, &f)
	return cmd
}

// eachContainer runs fn for every argument, printing each name that succeeded and
// joining the errors, as docker's multi-container commands do.
func eachContainer(out io.Writer, args []string, fn func(id string) error) error {
	var errs []error
	for _, a := range args {
		if err := fn(a); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(out, a)
	}
	return errors.Join(errs...)
}

func newStartCommand(c *cli) *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if attach || interactive {
				if len(args) > 1 {
					return errdefs.Invalid(errors.New("you cannot attach to several containers at once"))
				}
				ct, err := cl.ContainerInspect(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				code, err := c.attachStreams(cmd.Context(), cl, ct.ID, interactive && ct.Spec.OpenStdin, ct.Spec.Tty, true)
				if err != nil {
					return err
				}
				if code != 0 {
					return &exitError{code: code, err: fmt.Errorf("exited with code %d", code), silent: true}
				}
				return nil
			}
			return eachContainer(cmd.OutOrStdout(), args, func(id string) error { return cl.ContainerStart(cmd.Context(), id) })
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach to the container's output")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach to the container's input")
	return cmd
}

func newStopCommand(c *cli, restart bool) *cobra.Command {
	var timeout int
	use, short := "stop", "Stop containers: the stop signal, then SIGKILL after the timeout"
	if restart {
		use, short = "restart", "Restart containers"
	}
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] CONTAINER [CONTAINER...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var t *int
			if cmd.Flags().Changed("time") {
				t = &timeout
			}
			return eachContainer(cmd.OutOrStdout(), args, func(id string) error {
				if restart {
					return cl.ContainerRestart(cmd.Context(), id, t)
				}
				return cl.ContainerStop(cmd.Context(), id, t)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before SIGKILL")
	return cmd
}

func newKillCommand(c *cli) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Send a signal to containers (SIGKILL by default)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(id string) error { return cl.ContainerKill(cmd.Context(), id, signal) })
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send")
	return cmd
}

func newPauseCommand(c *cli, pause bool) *cobra.Command {
	use, short := "pause", "Freeze all processes of containers"
	if !pause {
		use, short = "unpause", "Thaw all processes of containers"
	}
	return &cobra.Command{
		Use:   use + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(id string) error {
				if pause {
					return cl.ContainerPause(cmd.Context(), id)
				}
				return cl.ContainerUnpause(cmd.Context(), id)
			})
		},
	}
}

func newRmCommand(c *cli) *cobra.Command {
	var force, vols bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(id string) error {
				return cl.ContainerRemove(cmd.Context(), id, force, vols)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	cmd.Flags().BoolVarP(&vols, "volumes", "v", false, "remove the container's anonymous volumes too")
	return cmd
}

func newRenameCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return cl.ContainerRename(cmd.Context(), args[0], args[1])
		},
	}
}

func newWaitCommand(c *cli) *cobra.Command {
	var condition string
	cmd := &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Wait until containers stop, and print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				code, err := cl.ContainerWait(cmd.Context(), a, condition)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), code)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&condition, "condition", "", "not-running (default), next-exit or removed")
	return cmd
}

func newPsCommand(c *cli) *cobra.Command {
	var all, quiet, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:     "ps [OPTIONS]",
		Aliases: []string{"container ls"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.ContainerList(cmd.Context(), all)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return printJSON(out, list)
			case "":
			default:
				return fmt.Errorf("unknown format %q (want json)", format)
			}
			id := func(ct *api.Container) string {
				if noTrunc {
					return ct.ID
				}
				return ct.ID[:12]
			}
			if quiet {
				for _, ct := range list {
					fmt.Fprintln(out, id(ct))
				}
				return nil
			}
			tw := table(out)
			row(tw, "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
			for _, ct := range list {
				command := strconv.Quote(strings.Join(ct.Args, " "))
				if !noTrunc && len(command) > 22 {
					command = command[:21] + "…\""
				}
				row(tw, id(ct), images.FamiliarName(ct.Image), command, humanAgo(ct.Created), status(ct), "", ct.Name)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "show all containers, not only running ones")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not shorten")
	f.StringVar(&format, "format", "", `"json" for JSON`)
	return cmd
}

// status says what a container is doing, as docker ps does.
func status(ct *api.Container) string {
	since := func(t time.Time) string { return strings.TrimSuffix(humanAgo(t), " ago") }
	switch ct.State {
	case engine.Running:
		switch {
		case ct.Health == nil:
		case ct.Health.Status == engine.HealthStarting:
			return "Up " + since(ct.StartedAt) + " (health: starting)"
		default:
			return "Up " + since(ct.StartedAt) + " (" + ct.Health.Status + ")"
		}
		return "Up " + since(ct.StartedAt)
	case engine.Paused:
		return "Up " + since(ct.StartedAt) + " (Paused)"
	case engine.Stopped:
		return fmt.Sprintf("Exited (%d) %s", ct.ExitCode, humanAgo(ct.FinishedAt))
	case engine.Restarting:
		return fmt.Sprintf("Restarting (%d) %s", ct.ExitCode, humanAgo(ct.FinishedAt))
	case engine.Created:
		return "Created"
	}
	return strings.ToUpper(string(ct.State[:1])) + string(ct.State[1:])
}

func newLogsCommand(c *cli) *cobra.Command {
	var o api.LogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Show a container's output (stdout to stdout, stderr to stderr)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			err = cl.ContainerLogs(cmd.Context(), args[0], o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if errors.Is(err, context.Canceled) {
				return nil // Ctrl-C ends -f
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.Follow, "follow", "f", false, "keep printing new output until the container stops")
	f.StringVarP(&o.Tail, "tail", "n", "all", "number of lines to show from the end")
	f.BoolVarP(&o.Timestamps, "timestamps", "t", false, "show times")
	f.StringVar(&o.Since, "since", "", "show output since a time (RFC 3339, Unix seconds, or 10m)")
	f.StringVar(&o.Until, "until", "", "show output before a time")
	return cmd
}

func newExecCommand(c *cli) *cobra.Command {
	var interactive, tty bool
	var env []string
	var user, workdir string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.runExec(cmd.Context(), cl, args[0], api.ExecRequest{Args: args[1:], User: user, WorkingDir: workdir, Tty: tty}, env, interactive)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&interactive, "interactive", "i", false, "pass standard input")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	f.StringArrayVarP(&env, "env", "e", nil, "set an environment variable")
	f.StringVarP(&user, "user", "u", "", "user (name|uid[:group|gid])")
	f.StringVarP(&workdir, "workdir", "w", "", "working directory")
	return cmd
}

// runExec runs req in container id with env (KEY=VALUE, or KEY for this shell's) added,
// and returns its exit as the command's.
func (c *cli) runExec(ctx context.Context, cl *api.Client, id string, req api.ExecRequest, env []string, stdin bool) error {
	for _, e := range env {
		req.Env = append(req.Env, expandEnv(e)...)
	}
	code, err := c.execStreams(ctx, cl, id, req, stdin)
	if err != nil {
		return runError(err)
	}
	if code != 0 {
		return &exitError{code: code, err: fmt.Errorf("exited with code %d", code), silent: true}
	}
	return nil
}

func newAttachCommand(c *cli) *cobra.Command {
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach this terminal to a running container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ct, err := cl.ContainerInspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			code, err := c.attachStreams(cmd.Context(), cl, ct.ID, !noStdin && ct.Spec.OpenStdin, ct.Spec.Tty, false)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code, err: fmt.Errorf("exited with code %d", code), silent: true}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach standard input")
	return cmd
}

func newInspectCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME|ID [NAME|ID...]",
		Short: "Show containers or images in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			out := []any{}
			var errs []error
			for _, a := range args {
				ct, err := cl.ContainerInspect(cmd.Context(), a)
				if err == nil {
					out = append(out, ct)
					continue
				}
				if !errors.Is(err, errdefs.ErrNotFound) {
					errs = append(errs, err)
					continue
				}
				im, ierr := cl.ImageInspect(cmd.Context(), a)
				if ierr != nil {
					errs = append(errs, fmt.Errorf("no such container or image: %s", a))
					continue
				}
				out = append(out, im)
			}
			if err := printJSON(cmd.OutOrStdout(), out); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}
}

func newEventsCommand(c *cli) *cobra.Command {
	var o api.EventsOptions
	var filters []string
	var format string
	var noFollow bool
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Show the engine's events as they happen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "type":
					o.Type = v
				case "container":
					o.Container = v
				default:
					return errdefs.Invalid(fmt.Errorf("unknown filter %q: want type=KIND or container=NAME", k))
				}
			}
			o.Follow = !noFollow
			cl, err := c.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			err = cl.Events(cmd.Context(), o, func(e api.Event) error {
				if format == "json" {
					b, _ := json.Marshal(e)
					_, err := fmt.Fprintln(out, string(b))
					return err
				}
				keys := make([]string, 0, len(e.Attributes))
				for k := range e.Attributes {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				attrs := make([]string, len(keys))
				for i, k := range keys {
					attrs[i] = k + "=" + e.Attributes[k]
				}
				id := e.ID
				if id == "" {
					id = e.Name
				}
				_, err := fmt.Fprintf(out, "%s %s %s %s (%s)\n", e.Time.Format(time.RFC3339Nano), e.Type, e.Action, id, strings.Join(attrs, ", "))
				return err
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Since, "since", "", "show events since a time (RFC 3339, Unix seconds, or 10m)")
	f.StringVar(&o.Until, "until", "", "stop at a time")
	f.StringArrayVarP(&filters, "filter", "f", nil, "type=container|image|volume|network|project, container=NAME")
	f.StringVar(&format, "format", "", `"json" for JSON lines`)
	f.BoolVar(&noFollow, "no-follow", false, "print recorded events and stop")
	return cmd
}

func newVMShareCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "vm-share REQUEST",
		Short:              "Serve a vm container's files to its VM (run by its shim)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(runVMShare(args[0]))
			return nil
		},
	}
}

func newBuildkitdExecCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "buildkitd-exec DATAROOT KEEP BUILDKITD [ARG...]",
		Short:              "Become buildkitd in a mount namespace of its own (run by the daemon)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(build.ExecMain(args))
			return nil
		},
	}
}

func newShimCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "shim STATEDIR|--spare",
		Short:              "Monitor one container (run by the daemon)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(runShim(args[0]))
			return nil
		},
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/images/build"
)

func newBuildCommand(c *cli) *cobra.Command {
	var (
		opts                         build.Options
		args, labels, secrets, plats []string
		progress                     string
		quiet                        bool
	)
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from a Dockerfile with BuildKit, which the daemon starts on the first build.
The image is stored and tagged as a pulled one is; --push also pushes it.

The daemon reads the context, the Dockerfile and the secrets' files itself, on this host.
.dockerignore (or Dockerfile.dockerignore beside the Dockerfile) leaves files out of the
context. Base images are pulled by BuildKit from their registries, with the daemon's
credentials and insecure registries.

--platform takes several platforms (comma-separated, or the flag repeated); those the host
cannot run are emulated with Debian's qemu-user-static, registered with binfmt_misc. Of a
multi-platform build the store keeps the host's image; --push pushes them all.`,
		Example: `  dutchman build -t web:dev .
  dutchman build -t 127.0.0.1:5000/team/app:v1 --push --platform linux/amd64,linux/arm64 .
  dutchman build -f docker/Dockerfile --target test --build-arg VERSION=1.2 .`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			var err error
			if pos[0] == "-" || strings.Contains(pos[0], "://") || strings.HasPrefix(pos[0], "git@") {
				return fmt.Errorf("context %s: only a directory is built from (a tar on stdin or a URL is not supported)", pos[0])
			}
			if opts.Context, err = filepath.Abs(pos[0]); err != nil {
				return err
			}
			switch opts.Dockerfile {
			case "":
			case "-":
				// The Dockerfile on stdin, as docker build -f - reads it.
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxDockerfile+1))
				if err != nil {
					return err
				}
				if len(b) > maxDockerfile {
					return fmt.Errorf("the Dockerfile on stdin is more than %d bytes", maxDockerfile)
				}
				opts.Dockerfile, opts.DockerfileInline = "", string(b)
			default:
				// A Dockerfile named from here, as docker build reads -f.
				if opts.Dockerfile, err = filepath.Abs(opts.Dockerfile); err != nil {
					return err
				}
			}
			if opts.Args, err = buildArgs(args); err != nil {
				return err
			}
			if opts.Labels, err = keyValues("label", labels); err != nil {
				return err
			}
			for _, p := range plats {
				for _, one := range strings.Split(p, ",") {
					if one = strings.TrimSpace(one); one != "" {
						opts.Platforms = append(opts.Platforms, one)
					}
				}
			}
			for _, s := range secrets {
				sec, err := parseSecret(s)
				if err != nil {
					return err
				}
				opts.Secrets = append(opts.Secrets, sec)
			}
			if quiet {
				progress = "quiet"
			}
			mode := progressui.DisplayMode(progress)
			switch mode {
			case progressui.AutoMode, progressui.PlainMode, progressui.TtyMode, progressui.QuietMode, progressui.RawJSONMode:
			default:
				return fmt.Errorf("invalid --progress %q: want auto, plain, tty, quiet or rawjson", progress)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := runBuild(cmd.Context(), cl, opts, mode)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				fmt.Fprintln(out, res.ID)
				return nil
			}
			for _, t := range res.Tags {
				fmt.Fprintf(out, "Tagged %s\n", t)
			}
			if res.Pushed != "" {
				fmt.Fprintf(out, "Pushed %s\n", res.Pushed)
			}
			fmt.Fprintf(out, "Built %s\n", res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&opts.Tags, "tag", "t", nil, "name the image (NAME[:TAG]); repeat for several")
	f.StringVarP(&opts.Dockerfile, "file", "f", "", "the Dockerfile (default: CONTEXT/Dockerfile; - reads it from stdin)")
	f.StringArrayVar(&args, "build-arg", nil, "set a build argument (KEY=VALUE, or KEY to pass this shell's)")
	f.StringArrayVar(&labels, "label", nil, "set a label on the image (KEY=VALUE)")
	f.StringVar(&opts.Target, "target", "", "build this stage (default: the last)")
	f.StringArrayVar(&plats, "platform", nil, "build for these platforms (os/arch[/variant], comma-separated)")
	f.BoolVar(&opts.Push, "push", false, "push the image to its tags' registries too")
	f.BoolVar(&opts.NoCache, "no-cache", false, "run every step again, without the cache")
	f.BoolVar(&opts.Pull, "pull", false, "look for newer versions of the base images")
	f.StringArrayVar(&secrets, "secret", nil, "a file a RUN step may mount as a secret (id=ID,src=FILE)")
	f.StringVar(&progress, "progress", "auto", "how to show progress: auto, plain, tty, quiet or rawjson")
	f.BoolVarP(&quiet, "quiet", "q", false, "show nothing but the image's ID")
	return cmd
}

// maxDockerfile bounds a Dockerfile read from stdin.
const maxDockerfile = 1 << 20

// runBuild runs a build, drawing BuildKit's progress on stderr in mode.
func runBuild(ctx context.Context, cl *api.Client, opts build.Options, mode progressui.DisplayMode) (*build.Result, error) {
	display, err := progressui.NewDisplay(os.Stderr, mode)
	if err != nil {
		return nil, err
	}
	ch := make(chan *client.SolveStatus)
	shown := make(chan struct{})
	go func() {
		display.UpdateFrom(ctx, ch)
		close(shown)
	}()
	res, err := cl.Build(ctx, opts, func(st *build.Status) {
		select {
		case ch <- st:
		case <-shown: // the display ended (interrupted)
		}
	})
	close(ch)
	<-shown
	return res, err
}

// buildArgs parses --build-arg: KEY=VALUE, or KEY for this shell's value (left out when
// unset, as docker build does).
func buildArgs(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid --build-arg %q: want KEY=VALUE or KEY", kv)
		}
		if !ok {
			if v, ok = os.LookupEnv(k); !ok {
				continue
			}
		}
		m[k] = v
	}
	return m, nil
}

// parseSecret parses --secret id=ID,src=FILE (source= too, and type=file).
func parseSecret(s string) (build.Secret, error) {
	var sec build.Secret
	for _, field := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "id":
			sec.ID = v
		case "src", "source":
			abs, err := filepath.Abs(v)
			if err != nil {
				return sec, err
			}
			sec.File = abs
		case "type":
			if v != "file" {
				return sec, fmt.Errorf("invalid --secret %q: only file secrets are supported", s)
			}
		default:
			return sec, fmt.Errorf("invalid --secret %q: want id=ID,src=FILE", s)
		}
	}
	if sec.ID == "" || sec.File == "" {
		return sec, fmt.Errorf("invalid --secret %q: want id=ID,src=FILE", s)
	}
	return sec, nil
}

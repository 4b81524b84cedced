package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/images"
)

func newVersionCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the daemon's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client:\n Version: %s\n", version)
			cl, err := c.client()
			if err != nil {
				return err
			}
			v, err := cl.Version(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Daemon:\n Version: %s\n API version: %s\n Go version: %s\n OS/Arch: %s/%s\n", v.Version, v.APIVersion, v.GoVersion, v.OS, v.Arch)
			return nil
		},
	}
}

func newInfoCommand(c *cli) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show what the daemon is and holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			info, err := cl.Info(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), info)
			}
			insecure := strings.Join(info.InsecureRegistries, ", ")
			if insecure == "" {
				insecure = "(loopback only)"
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Version: %s\nOS/Arch: %s/%s\nData root: %s\nStorage driver: %s\nRuntimes: %s\nDefault runtime: %s\n",
				info.Version, info.OS, info.Arch, info.DataRoot, info.StorageDriver, strings.Join(info.Runtimes, ", "), info.DefaultRuntime)
			if v := info.VM; v != nil {
				fmt.Fprintf(out, "VM accelerator: %s\n", describeAccel(v))
			}
			fmt.Fprintf(out, "Insecure registries: %s\nBuilder: %s\n"+
				"Containers: %d (running %d, paused %d, stopped %d)\nImages: %d\nBlobs: %d\nSnapshots: %d\n",
				insecure, info.Builder,
				info.Containers, info.ContainersRunning, info.ContainersPaused, info.ContainersStopped, info.Images, info.Blobs, info.Snapshots)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", `"json" for JSON`)
	return cmd
}

// describeAccel is the vm runtime's accelerator on one line: "kvm (cpu host)", or
// "tcg (why not KVM)".
func describeAccel(v *api.VMAccel) string {
	s := v.Accel
	if v.CPU != "" {
		s += " (cpu " + v.CPU + ")"
	}
	if v.Reason != "" {
		s += " (" + v.Reason + ")"
	}
	if v.Setting != "" && v.Setting != "auto" {
		s += " [--vm-accel " + v.Setting + "]"
	}
	return s
}

func newPullCommand(c *cli) *cobra.Command {
	var platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry",
		Long: `Pull an image from a registry. Layers already in the store are neither downloaded nor
unpacked again. On a terminal each layer shows a progress bar; otherwise each change of a
layer's status is one line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return pull(cmd.Context(), cl, cmd.OutOrStdout(), args[0], platform, quiet)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "pull this platform (os/arch[/variant]) of a multi-platform image")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image's name")
	return cmd
}

func pull(ctx context.Context, cl *api.Client, out io.Writer, ref, platform string, quiet bool) error {
	disp := newPullDisplay(out, barsFit(out), quiet)
	im, err := cl.ImagePull(ctx, ref, platform, disp.update)
	disp.finish()
	if err != nil {
		return err
	}
	name := ref
	if r, perr := images.ParseReference(ref); perr == nil {
		name = r.String()
	}
	if !quiet {
		fmt.Fprintf(out, "Digest: %s\n", im.Digest)
		fmt.Fprintf(out, "Status: pulled %s\n", name)
	}
	fmt.Fprintln(out, name)
	return nil
}

func newImagesCommand(c *cli) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.filter = args[0]
			}
			return listImages(cmd.Context(), c, cmd.OutOrStdout(), o)
		},
	}
	addImagesFlags(cmd, &o)
	return cmd
}

type imagesOptions struct {
	quiet, digests, noTrunc, all bool
	format, filter               string
}

func addImagesFlags(cmd *cobra.Command, o *imagesOptions) {
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only image IDs")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "do not shorten IDs")
	f.BoolVarP(&o.all, "all", "a", false, "also list the other platforms' images of multi-platform names")
	f.StringVar(&o.format, "format", "", `"json" for JSON`)
}

// imageRow is one line of the images table: an image under one of its names.
type imageRow struct {
	repo, tag, digest string
	im                *api.Image
}

func imageRows(list []*api.Image) []imageRow {
	var rows []imageRow
	for _, im := range list {
		digests := map[string]string{}
		for _, rd := range im.RepoDigests {
			if repo, d, ok := strings.Cut(rd, "@"); ok {
				digests[repo] = d
			}
		}
		tagged := map[string]bool{}
		for _, n := range im.Names {
			r, err := images.ParseReference(n)
			if err != nil {
				continue
			}
			repo := images.FamiliarName(r.Repository())
			if r.Tag() != "" {
				rows = append(rows, imageRow{repo: repo, tag: r.Tag(), digest: digests[r.Repository()], im: im})
				tagged[repo] = true
			}
		}
		for _, n := range im.Names {
			r, err := images.ParseReference(n)
			if err != nil || r.Tag() != "" {
				continue
			}
			if repo := images.FamiliarName(r.Repository()); !tagged[repo] {
				rows = append(rows, imageRow{repo: repo, tag: "<none>", digest: r.Digest(), im: im})
			}
		}
		if len(im.Names) == 0 {
			rows = append(rows, imageRow{repo: "<none>", tag: "<none>", digest: "<none>", im: im})
		}
	}
	return rows
}

func listImages(ctx context.Context, c *cli, out io.Writer, o imagesOptions) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	list, err := cl.ImageList(ctx)
	if err != nil {
		return err
	}
	if !o.all {
		// Another platform's image of a multi-platform name is its name's: inspect
		// lists the name's platforms.
		list = slices.DeleteFunc(list, func(im *api.Image) bool { return len(im.Names) == 0 && len(im.PlatformOf) > 0 })
	}
	rows := imageRows(list)
	if o.filter != "" {
		want := o.filter
		var kept []imageRow
		for _, r := range rows {
			if r.repo == want || r.repo+":"+r.tag == want {
				kept = append(kept, r)
			}
		}
		rows = kept
	}
	if o.format == "json" {
		seen := map[*api.Image]bool{}
		ims := []*api.Image{}
		for _, r := range rows {
			if !seen[r.im] {
				seen[r.im] = true
				ims = append(ims, r.im)
			}
		}
		return printJSON(out, ims)
	}
	if o.format != "" {
		return fmt.Errorf("unknown format %q (want json)", o.format)
	}
	id := func(im *api.Image) string {
		if o.noTrunc {
			return im.ID
		}
		return shortID(im.ID)
	}
	if o.quiet {
		seen := map[string]bool{}
		for _, r := range rows {
			if i := id(r.im); !seen[i] {
				seen[i] = true
				fmt.Fprintln(out, i)
			}
		}
		return nil
	}
	tw := table(out)
	header := []string{"REPOSITORY", "TAG"}
	if o.digests {
		header = append(header, "DIGEST")
	}
	row(tw, append(header, "IMAGE ID", "CREATED", "SIZE")...)
	for _, r := range rows {
		cols := []string{r.repo, r.tag}
		if o.digests {
			cols = append(cols, orDefault(r.digest, "<none>"))
		}
		row(tw, append(cols, id(r.im), humanAgo(r.im.Created), humanSize(r.im.Size))...)
	}
	return tw.Flush()
}

func newRmiCommand(c *cli) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove images",
		Long: `Remove images by name or ID. Removing a name keeps the image while it has other names;
removing its last name removes the image, unless a container uses it. Blobs and unpacked
layers no other image uses are deleted.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return removeImages(cmd.Context(), c, cmd.OutOrStdout(), args, force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image with several names by ID, or the last name of one in use")
	return cmd
}

func removeImages(ctx context.Context, c *cli, out io.Writer, args []string, force bool) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range args {
		del, err := cl.ImageRemove(ctx, a, force)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, u := range del.Untagged {
			fmt.Fprintf(out, "Untagged: %s\n", images.FamiliarName(u))
		}
		for _, d := range del.Deleted {
			fmt.Fprintf(out, "Deleted: %s\n", d)
		}
	}
	return errors.Join(errs...)
}

func newTagCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Give an image another name",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return cl.ImageTag(cmd.Context(), args[0], args[1])
		},
	}
}

func newPushCommand(c *cli) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG] [DESTINATION]",
		Short: "Push an image to a registry",
		Long: `Push an image to the registry its name points at, or to DESTINATION (a full reference)
as podman push does. Blobs the registry already has are not sent again.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			target := ""
			if len(args) == 2 {
				target = args[1]
			}
			out := cmd.OutOrStdout()
			last := ""
			digest, err := cl.ImagePush(cmd.Context(), args[0], target, func(p api.PushProgress) {
				if quiet || p.Total == 0 {
					return
				}
				line := fmt.Sprintf("%s: %s %s / %s", images.FamiliarName(p.Ref), p.Status, humanSize(p.Current), humanSize(p.Total))
				if f, ok := out.(*os.File); ok && isTerminal(f) {
					fmt.Fprintf(out, "\r%s\033[K", line)
				} else if p.Status != last {
					fmt.Fprintln(out, line)
				}
				last = p.Status
			})
			if f, ok := out.(*os.File); ok && isTerminal(f) && !quiet {
				fmt.Fprintln(out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Digest: %s\n", digest)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the digest")
	return cmd
}

func newSaveCommand(c *cli) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Write images to a tar archive (OCI layout and docker save format at once)",
		Long: `Write images to a tar archive, to standard output or to --output. The archive is both an
OCI image layout and a docker save archive, as Docker 25 writes them: docker load, podman
load, skopeo (oci-archive:) and dutchman load all read it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && isTerminal(f) {
					return errors.New("refusing to write an archive to a terminal: use --output or redirect")
				}
				return cl.ImageSave(cmd.Context(), args, cmd.OutOrStdout())
			}
			// Write beside the target and rename, so a failed save leaves no partial file.
			tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if err := cl.ImageSave(cmd.Context(), args, tmp); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			os.Chmod(tmp.Name(), 0o644)
			return os.Rename(tmp.Name(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

func newLoadCommand(c *cli) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load images from a tar archive or an OCI layout directory",
		Long: `Load images from an archive on standard input or --input: an OCI image layout (as a tar,
or a directory) or a docker save archive.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if input != "" && input != "-" {
				info, err := os.Stat(input)
				if err != nil {
					return err
				}
				if info.IsDir() {
					pr, pw := io.Pipe()
					go func() { pw.CloseWithError(tarDirectory(pw, input)) }()
					r = pr
				} else {
					f, err := os.Open(input)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
			} else if f, ok := r.(*os.File); ok && isTerminal(f) {
				return errors.New("no archive: give --input or redirect one to standard input")
			}
			out := cmd.OutOrStdout()
			disp := newPullDisplay(out, barsFit(out), quiet)
			loaded, err := cl.ImageLoad(cmd.Context(), r, disp.update)
			disp.finish()
			if err != nil {
				return err
			}
			for _, n := range loaded.Names {
				fmt.Fprintf(out, "Loaded image: %s\n", images.FamiliarName(n))
			}
			for _, id := range loaded.IDs {
				fmt.Fprintf(out, "Loaded image ID: %s\n", id)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from this file or OCI layout directory instead of standard input")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress")
	return cmd
}

func newImageCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
	}
	var o imagesOptions
	ls := &cobra.Command{
		Use:     "ls [OPTIONS] [REPOSITORY[:TAG]]",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.filter = args[0]
			}
			return listImages(cmd.Context(), c, cmd.OutOrStdout(), o)
		},
	}
	addImagesFlags(ls, &o)
	rm := newRmiCommand(c)
	rm.Use, rm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"remove"}
	inspect := &cobra.Command{
		Use:   "inspect IMAGE [IMAGE...]",
		Short: "Show images in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			out := []*api.Image{}
			var errs []error
			for _, a := range args {
				im, err := cl.ImageInspect(cmd.Context(), a)
				if err != nil {
					errs = append(errs, err)
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
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove images that have no name and no container using them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			del, err := cl.ImagePrune(cmd.Context())
			if err != nil {
				return err
			}
			sort.Strings(del.Deleted)
			for _, d := range del.Deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "Deleted: %s\n", d)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, rm, inspect, prune, newPullCommand(c), newPushCommand(c), newTagCommand(c), newSaveCommand(c), newLoadCommand(c))
	return cmd
}

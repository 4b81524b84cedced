package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

// newKernelCommand is `dutchman kernel`: the guest kernels of the vm runtime.
func newKernelCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "kernel", Short: "Manage the vm runtime's guest kernels",
		Long: `Manage the guest kernels vm containers boot. The daemon fetches one by itself the first
time a vm container needs it (its --vm-kernel source, Debian's linux-image-cloud-amd64 by
default); these commands fetch others, choose the default, and publish kernels as OCI
artifacts in a registry.

A SOURCE is "debian:PACKAGE" (apt-get download on the daemon's machine), the absolute
path of a kernel .deb there, or the reference of a kernel artifact (dutchman kernel push).`}

	var quiet bool
	var format string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List kernels",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ks, err := cl.KernelList(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), ks, format, quiet, func(k vm.Kernel) string { return k.Name },
				[]string{"NAME", "DEFAULT", "SIZE", "SOURCE"},
				func(k vm.Kernel) []string {
					def := ""
					if k.Default {
						def = "*"
					}
					return []string{k.Name, def, humanSize(k.Size), k.Source}
				})
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "only names")
	ls.Flags().StringVar(&format, "format", "", `"json" for JSON`)

	pull := &cobra.Command{
		Use:   "pull SOURCE",
		Short: "Fetch a kernel (the first one fetched becomes the default)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			source := args[0]
			if strings.HasSuffix(source, ".deb") {
				// The daemon reads the file: name it absolutely.
				if source, err = filepath.Abs(source); err != nil {
					return err
				}
			}
			k, err := cl.KernelPull(cmd.Context(), source)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Name)
			return nil
		},
	}

	rm := &cobra.Command{
		Use:     "rm NAME [NAME...]",
		Aliases: []string{"remove"},
		Short:   "Remove kernels",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(name string) error { return cl.KernelRemove(cmd.Context(), name) })
		},
	}

	def := &cobra.Command{
		Use:   "default NAME",
		Short: "Make a kernel the default of vm containers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return cl.KernelDefault(cmd.Context(), args[0])
		},
	}

	var from string
	push := &cobra.Command{
		Use:   "push [--from SOURCE] REF",
		Short: "Make a kernel artifact from a Debian kernel package and push it to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if strings.HasSuffix(from, ".deb") {
				if from, err = filepath.Abs(from); err != nil {
					return err
				}
			}
			digest, err := cl.KernelPush(cmd.Context(), from, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\n", args[0], digest)
			return nil
		},
	}
	push.Flags().StringVar(&from, "from", vm.DefaultKernelSource, `the kernel package: "debian:PACKAGE" or a .deb file`)

	cmd.AddCommand(ls, pull, rm, def, push)
	return cmd
}

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/engine"
)

// newVolumeCommand is `dutchman volume`: create, ls, inspect, rm and prune, as docker's.
func newVolumeCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	var req api.VolumeCreateRequest
	var labels, opts []string
	create := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume (a random name if none is given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				req.Name = args[0]
			}
			if req.Labels, err = keyValues("label", labels); err != nil {
				return err
			}
			if req.DriverOpts, err = keyValues("opt", opts); err != nil {
				return err
			}
			v, err := cl.VolumeCreate(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.Name)
			return nil
		},
	}
	create.Flags().StringVarP(&req.Driver, "driver", "d", "local", "volume driver")
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a label (KEY=VALUE)")
	create.Flags().StringArrayVarP(&opts, "opt", "o", nil, "set a driver option (KEY=VALUE: type, device, o)")

	var quiet bool
	var format string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			vs, err := cl.VolumeList(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), vs, format, quiet, func(v *engine.VolumeInfo) string { return v.Name },
				[]string{"DRIVER", "VOLUME NAME", "USED BY"},
				func(v *engine.VolumeInfo) []string { return []string{v.Driver, v.Name, strings.Join(v.UsedBy, ",")} })
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "only names")
	ls.Flags().StringVar(&format, "format", "", `"json" for JSON`)

	inspect := &cobra.Command{
		Use:   "inspect VOLUME [VOLUME...]",
		Short: "Show volumes in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return printEach(cmd.OutOrStdout(), args, func(name string) (*engine.VolumeInfo, error) { return cl.VolumeInspect(cmd.Context(), name) })
		},
	}

	rm := &cobra.Command{
		Use:     "rm VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove volumes (refused while a container uses one)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(name string) error { return cl.VolumeRemove(cmd.Context(), name) })
		},
	}

	var all bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove the anonymous volumes no container uses (all unused ones with -a)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			removed, err := cl.VolumePrune(cmd.Context(), all)
			for _, n := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return err
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "named volumes too")

	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

// keyValues parses KEY=VALUE flags.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

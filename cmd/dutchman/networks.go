package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
)

// newNetworkCommand is `dutchman network`: create, ls, inspect, rm and prune, as docker's.
func newNetworkCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}
	var req api.NetworkCreateRequest
	var labels []string
	var driver string
	create := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a bridge network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if driver != "bridge" {
				return fmt.Errorf("network driver %q is not supported (only bridge)", driver)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.Labels, err = keyValues("label", labels); err != nil {
				return err
			}
			n, err := cl.NetworkCreate(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), n.ID)
			return nil
		},
	}
	create.Flags().StringVarP(&driver, "driver", "d", "bridge", "network driver")
	create.Flags().StringVar(&req.Subnet, "subnet", "", "the network's IPv4 subnet, e.g. 10.90.0.0/24 (one free of the host's routes if none)")
	create.Flags().StringVar(&req.Gateway, "gateway", "", "the subnet's gateway (its first address if none)")
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a label (KEY=VALUE)")

	var quiet bool
	var format string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ns, err := cl.NetworkList(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), ns, format, quiet, func(n *engine.NetworkInfo) string { return n.Name },
				[]string{"NETWORK ID", "NAME", "DRIVER", "SUBNET", "CONTAINERS"},
				func(n *engine.NetworkInfo) []string {
					var names []string
					for _, m := range n.Containers {
						names = append(names, m.Name)
					}
					return []string{n.ID[:12], n.Name, n.Driver, n.Subnet, strings.Join(names, ",")}
				})
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "only names")
	ls.Flags().StringVar(&format, "format", "", `"json" for JSON`)

	inspect := &cobra.Command{
		Use:   "inspect NETWORK [NETWORK...]",
		Short: "Show networks in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return printEach(cmd.OutOrStdout(), args, func(name string) (*engine.NetworkInfo, error) { return cl.NetworkInspect(cmd.Context(), name) })
		},
	}

	rm := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove networks (refused while a container names one)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return eachContainer(cmd.OutOrStdout(), args, func(name string) error { return cl.NetworkRemove(cmd.Context(), name) })
		},
	}

	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove the networks no container names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			removed, err := cl.NetworkPrune(cmd.Context())
			for _, n := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return err
		},
	}
	var creq api.NetworkConnectRequest
	connect := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Put a container on a network (at once if it runs)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			creq.Container = args[1]
			return cl.NetworkConnect(cmd.Context(), args[0], creq)
		},
	}
	connect.Flags().StringVar(&creq.IP, "ip", "", "the container's IPv4 address on the network")
	connect.Flags().StringArrayVar(&creq.Aliases, "alias", nil, "another name the container has on the network")
	disconnect := &cobra.Command{
		Use:   "disconnect NETWORK CONTAINER",
		Short: "Take a container off a network",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return cl.NetworkDisconnect(cmd.Context(), args[0], args[1])
		},
	}
	cmd.AddCommand(create, ls, inspect, rm, prune, connect, disconnect)
	return cmd
}

// newPortCommand is `dutchman port CONTAINER [PORT[/PROTO]]`: the container's published
// ports, as docker port shows them.
func newPortCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List a container's published ports",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ct, err := cl.ContainerInspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var want *network.Port
			if len(args) == 2 {
				ps, err := network.ParsePort(args[1])
				if err != nil || len(ps) != 1 {
					return fmt.Errorf("invalid port %q: want PORT[/tcp|udp]", args[1])
				}
				want = &ps[0]
			}
			out := cmd.OutOrStdout()
			found := false
			for _, ep := range ct.Endpoints {
				for _, p := range ep.Ports {
					ip := p.HostIP
					if ip == "" {
						ip = "0.0.0.0"
					}
					switch {
					case want == nil:
						fmt.Fprintf(out, "%d/%s -> %s:%d\n", p.ContainerPort, p.Protocol, ip, p.HostPort)
					case want.ContainerPort == p.ContainerPort && want.Protocol == p.Protocol:
						fmt.Fprintf(out, "%s:%d\n", ip, p.HostPort)
					default:
						continue
					}
					found = true
				}
			}
			if want != nil && !found {
				return fmt.Errorf("no public port '%d/%s' published for %s", want.ContainerPort, want.Protocol, args[0])
			}
			return nil
		},
	}
}

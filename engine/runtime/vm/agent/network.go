//go:build linux

package agent

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

// configureNetwork brings loopback up and configures each interface, found by its MAC
// address: its name, addresses, MTU, and the default route.
func configureNetwork(ifaces []proto.Interface) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}
	if len(ifaces) == 0 {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	byMAC := map[string]netlink.Link{}
	for _, l := range links {
		byMAC[strings.ToLower(l.Attrs().HardwareAddr.String())] = l
	}
	routed := false
	for _, want := range ifaces {
		l := byMAC[strings.ToLower(want.MAC)]
		if l == nil {
			return fmt.Errorf("no interface has MAC address %s", want.MAC)
		}
		if want.Name != "" && l.Attrs().Name != want.Name {
			if err := netlink.LinkSetName(l, want.Name); err != nil {
				return fmt.Errorf("rename %s to %s: %w", l.Attrs().Name, want.Name, err)
			}
		}
		if want.MTU > 0 {
			if err := netlink.LinkSetMTU(l, want.MTU); err != nil {
				return fmt.Errorf("set the MTU of %s: %w", want.Name, err)
			}
		}
		for _, a := range want.Addresses {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("add %s to %s: %w", a, want.Name, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring %s up: %w", want.Name, err)
		}
		if want.Gateway != "" && !routed {
			gw := net.ParseIP(want.Gateway)
			if gw == nil {
				return fmt.Errorf("bad gateway %q", want.Gateway)
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
				return fmt.Errorf("add the default route through %s: %w", want.Gateway, err)
			}
			routed = true
		}
	}
	return nil
}

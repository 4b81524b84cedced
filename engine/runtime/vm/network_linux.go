package vm

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

// openTaps connects the VM to the container's network namespace as Kata Containers
// does: beside each interface the engine put there (a veth on a bridge), a tap, and tc
// rules that pass every frame from one to the other. It returns the taps, for QEMU, and
// the interfaces as the guest must configure them: the veths' MAC and IP addresses,
// names and default route. The taps go when QEMU, the last to hold them, exits.
func openTaps(nsPath string) ([]*os.File, []proto.Interface, error) {
	if nsPath == "" {
		return nil, nil, nil
	}
	type result struct {
		taps   []*os.File
		ifaces []proto.Interface
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		// A thread that entered another namespace is not given back: it ends with this
		// goroutine, still locked.
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: fmt.Errorf("open the network namespace: %w", err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		taps, ifaces, err := makeTaps()
		ch <- result{taps, ifaces, err}
	}()
	r := <-ch
	return r.taps, r.ifaces, r.err
}

// makeTaps does openTaps's work inside the namespace.
func makeTaps() (taps []*os.File, ifaces []proto.Interface, err error) {
	defer func() {
		if err != nil {
			for _, t := range taps {
				t.Close()
			}
		}
	}()
	links, err := netlink.LinkList()
	if err != nil {
		return nil, nil, err
	}
	var gateway string
	if routes, err := netlink.RouteList(nil, unix.AF_INET); err == nil {
		for _, r := range routes {
			if r.Dst == nil && r.Gw != nil {
				gateway = r.Gw.String()
			}
		}
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || l.Type() == "tuntap" {
			continue
		}
		iface := proto.Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
		addrs, err := netlink.AddrList(l, unix.AF_INET)
		if err != nil {
			return nil, nil, err
		}
		for _, ad := range addrs {
			iface.Addresses = append(iface.Addresses, ad.IPNet.String())
			if gateway != "" && ad.IPNet.Contains(parseIP(gateway)) {
				iface.Gateway = gateway
			}
		}
		tap := &netlink.Tuntap{
			LinkAttrs:  netlink.LinkAttrs{Name: fmt.Sprintf("tap%d", len(taps)), MTU: a.MTU},
			Mode:       netlink.TUNTAP_MODE_TAP,
			Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			Queues:     1,
			NonPersist: true,
		}
		if err := netlink.LinkAdd(tap); err != nil {
			return nil, nil, fmt.Errorf("add a tap beside %s: %w", a.Name, err)
		}
		taps = append(taps, tap.Fds...)
		tl, err := netlink.LinkByName(tap.Name)
		if err != nil {
			return nil, nil, err
		}
		if err := netlink.LinkSetUp(tl); err != nil {
			return nil, nil, err
		}
		if err := redirect(a.Index, tl.Attrs().Index); err != nil {
			return nil, nil, fmt.Errorf("connect %s to %s: %w", tap.Name, a.Name, err)
		}
		if err := redirect(tl.Attrs().Index, a.Index); err != nil {
			return nil, nil, fmt.Errorf("connect %s to %s: %w", a.Name, tap.Name, err)
		}
		ifaces = append(ifaces, iface)
	}
	return taps, ifaces, nil
}

func parseIP(s string) net.IP {
	return net.ParseIP(s)
}

// redirect passes every frame arriving on link from to link to (tc ingress, u32 match
// all, mirred egress redirect).
func redirect(from, to int) error {
	qdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscAdd(qdisc); err != nil {
		return fmt.Errorf("add an ingress qdisc: %w", err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from, Parent: netlink.MakeHandle(0xffff, 0),
			Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("add a redirect filter: %w", err)
	}
	return nil
}

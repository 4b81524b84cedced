package network

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// forwardChain holds what the host forwards for the networks' bridges, as Docker's
// DOCKER-FORWARD and DOCKER-ISOLATION chains do, whatever FORWARD's policy (Docker sets
// it to DROP): FORWARD jumps to it first. For each bridge it lets through traffic
// within the network, from it to the world, replies to it, and connections to its
// published ports (the ones portmap's DNAT sent there); the last rule drops traffic
// from one of the networks' bridges to another, which the host would otherwise route:
// networks are kept apart.
const forwardChain = "DUTCHMAN-FORWARD"

// userChain is the administrator's, as Docker's DOCKER-USER: FORWARD jumps to it before
// forwardChain, and the engine makes it but never changes what is in it. Rules there
// (iptables -I DUTCHMAN-USER ...) restrict what reaches the containers, published ports
// included, and stay across restarts of the daemon.
const userChain = "DUTCHMAN-USER"

var (
	forwardMu sync.Mutex
	// forwarding are the bridges whose rules this daemon set: each iptables run is a
	// program started, so they are checked with one run, not set on every start.
	forwarding = map[string]bool{}
)

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
	return nil
}

// ensure adds rule to chain (at the top if insert) unless it is there.
func ensure(chain string, insert bool, rule ...string) error {
	if iptables(append([]string{"-C", chain}, rule...)...) == nil {
		return nil
	}
	if insert {
		return iptables(append([]string{"-I", chain, "1"}, rule...)...)
	}
	return iptables(append([]string{"-A", chain}, rule...)...)
}

// bridgeRules are what forwardChain lets through for bridge.
func bridgeRules(bridge string) [][]string {
	return [][]string{
		{"-i", bridge, "-o", bridge, "-j", "ACCEPT"},
		{"-i", bridge, "!", "-o", "dm-+", "-j", "ACCEPT"},
		{"-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"},
	}
}

// isolate sets the forwarding rules of bridge's network.
func isolate(bridge string) error {
	forwardMu.Lock()
	defer forwardMu.Unlock()
	// Set by this daemon, and still there (one check for all).
	if forwarding[bridge] && iptables(append([]string{"-C", forwardChain}, bridgeRules(bridge)[0]...)...) == nil {
		return nil
	}
	iptables("-N", forwardChain) // there already, mostly
	iptables("-N", userChain)
	// Both at the top of FORWARD, the administrator's first.
	if err := ensure("FORWARD", true, "-j", forwardChain); err != nil {
		return err
	}
	if err := ensure("FORWARD", true, "-j", userChain); err != nil {
		return err
	}
	for _, r := range bridgeRules(bridge) {
		if err := ensure(forwardChain, true, r...); err != nil {
			return err
		}
	}
	if err := ensure(forwardChain, false, "-i", "dm-+", "-o", "dm-+", "-j", "DROP"); err != nil {
		return err
	}
	// New connections into a network from elsewhere (a host on the LAN with a route to
	// it) are not let in but to published ports.
	if err := ensure(forwardChain, false, "-o", "dm-+", "-j", "DROP"); err != nil {
		return err
	}
	// portmap turns route_localnet on for a bridge (so that the host reaches published
	// ports on 127.0.0.1): containers must not reach the host's loopback services
	// through it, as Docker's rule keeps them from.
	if err := ensure("PREROUTING", true, "-t", "raw", "-i", "dm-+", "-d", "127.0.0.0/8", "-j", "DROP"); err != nil {
		return err
	}
	forwarding[bridge] = true
	return nil
}

// unisolate removes the rules of bridge (its network went).
func unisolate(bridge string) {
	forwardMu.Lock()
	defer forwardMu.Unlock()
	delete(forwarding, bridge)
	for _, r := range bridgeRules(bridge) {
		for iptables(append([]string{"-D", forwardChain}, r...)...) == nil {
		}
	}
}

package network

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// isolationChain keeps the members of different networks apart, as Docker's
// DOCKER-ISOLATION chains do: the host forwards between the bridges of its networks
// (CNI's bridge turns forwarding on), so without it a container would reach every
// other network's containers by address. FORWARD jumps to it first; it lets traffic
// within one bridge through and drops traffic from one of the networks' bridges to
// another.
const isolationChain = "DUTCHMAN-ISOLATION"

var isolationMu sync.Mutex

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

// isolate keeps bridge's network apart from the others.
func isolate(bridge string) error {
	isolationMu.Lock()
	defer isolationMu.Unlock()
	iptables("-N", isolationChain) // there already, mostly
	if err := ensure("FORWARD", true, "-j", isolationChain); err != nil {
		return err
	}
	if err := ensure(isolationChain, true, "-i", bridge, "-o", bridge, "-j", "RETURN"); err != nil {
		return err
	}
	return ensure(isolationChain, false, "-i", "dm-+", "-o", "dm-+", "-j", "DROP")
}

// unisolate removes what isolate added for bridge (its network went).
func unisolate(bridge string) {
	isolationMu.Lock()
	defer isolationMu.Unlock()
	for iptables("-D", isolationChain, "-i", bridge, "-o", bridge, "-j", "RETURN") == nil {
	}
}

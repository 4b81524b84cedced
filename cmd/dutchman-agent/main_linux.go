// Command dutchman-agent is the guest agent of FlyingDutchman's vm runtime: the init of
// each container's VM. It loads the kernel modules the initramfs carries, mounts the
// host's share (virtio-fs), opens the channel to the host (virtio-serial or vsock) and
// serves the host's requests: the container's mounts, its processes and their streams,
// signals, stats, and the power-off at the end. See package agent and docs/vm.md.
package main

import (
	"fmt"
	"os"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "dutchman-agent runs as the init of a vm container's guest, not by hand")
		os.Exit(2)
	}
	agent.Init()
}

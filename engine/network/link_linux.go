package network

import "os/exec"

// deleteLink deletes the host's network device name (a network's bridge), if it is there.
func deleteLink(name string) {
	exec.Command("ip", "link", "delete", name).Run()
}

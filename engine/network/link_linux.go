package network

import (
	"os"
	"os/exec"
	"path/filepath"
)

// deleteLink deletes the host's network device name (a network's bridge), if it is there.
func deleteLink(name string) {
	exec.Command("ip", "link", "delete", name).Run()
}

// idleBridge tells whether name is a bridge with no interface on it.
func idleBridge(name string) bool {
	ports, err := os.ReadDir(filepath.Join("/sys/class/net", name, "brif"))
	return err == nil && len(ports) == 0
}

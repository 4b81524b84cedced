package oci

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultRlimits are the resource limits every container process gets, before clamping.
//
// Docker sets none itself: containers inherit dockerd's, which its systemd unit raises to
// LimitNOFILE=1048576. We state that value instead of depending on how the daemon was
// started.
var defaultRlimits = []struct {
	name       string // as the OCI spec names it
	resource   int
	soft, hard uint64
}{
	{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 1 << 20, 1 << 20},
}

// hostRlimitHard returns the hard limit of resource for this process: runc and the
// container process are its descendants and inherit it.
func hostRlimitHard(resource int) (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(resource, &r); err != nil {
		return 0, err
	}
	return r.Max, nil
}

// containerRlimits returns defaultRlimits clamped to the hard limits hostHard reports.
//
// Raising a hard limit needs CAP_SYS_RESOURCE, which root does not always have (in this
// project's CI VMs root lacks it, and the hard RLIMIT_NOFILE is 20000): runc would then
// fail the whole start with "error setting rlimit type 7: operation not permitted". A
// container that gets the host's maximum is better than one that does not start, so
// every limit is lowered to what the daemon itself may have.
func containerRlimits(hostHard func(resource int) (uint64, error)) ([]specs.POSIXRlimit, error) {
	out := make([]specs.POSIXRlimit, 0, len(defaultRlimits))
	for _, d := range defaultRlimits {
		limit, err := hostHard(d.resource)
		if err != nil {
			return nil, fmt.Errorf("read the daemon's %s: %w", d.name, err)
		}
		hard := min(d.hard, limit)
		out = append(out, specs.POSIXRlimit{Type: d.name, Hard: hard, Soft: min(d.soft, hard)})
	}
	return out, nil
}

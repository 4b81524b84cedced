package vm

import (
	"fmt"
	"time"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Settings of the vm runtime's accelerator (the daemon's --vm-accel).
const (
	// AccelAuto boots guests under KVM where a probe saw a guest run on it, under TCG
	// elsewhere.
	AccelAuto = "auto"
	// AccelKVM boots guests under KVM only: where it cannot run them, their start fails.
	AccelKVM = "kvm"
	// AccelTCG boots guests under TCG, QEMU's emulator: slow, but it runs anywhere.
	AccelTCG = "tcg"
)

// CheckAccel checks an accelerator setting ("" is auto).
func CheckAccel(setting string) error {
	switch setting {
	case "", AccelAuto, AccelKVM, AccelTCG:
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("vm accelerator %q: want auto, kvm or tcg", setting))
}

// What AccelInfo.Accel says.
const (
	AccelNameKVM     = "kvm"
	AccelNameTCG     = "tcg"
	AccelNameUnknown = "unknown"
)

// AccelInfo is what the vm runtime knows of its accelerator, for info.
type AccelInfo struct {
	// Setting is the daemon's: auto, kvm or tcg.
	Setting string `json:"setting"`
	// KVM tells that a probe saw the guest run under KVM, and the setting lets it.
	KVM bool `json:"kvm"`
	// Accel is what the next guest boots with: "kvm", "tcg", or "unknown" while KVM is
	// still to be probed (no guest kernel yet, or a probe under way).
	Accel string `json:"accel"`
	// CPU is QEMU's CPU model under KVM: "host", or "default" for QEMU's own.
	CPU string `json:"cpu,omitempty"`
	// Reason says in one line why guests do not get KVM (or why that is not known yet,
	// or why, with the setting kvm, they will not start).
	Reason string `json:"reason,omitempty"`
	// Probed is when KVM was probed, and ProbeMillis how long the probe took.
	Probed      *time.Time `json:"probed,omitempty"`
	ProbeMillis int64      `json:"probeMillis,omitempty"`
}

package vm

import (
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

// LaunchConfig is what the shim's vm launcher boots a container's VM with. The runtime
// writes it into the shim's configuration.
type LaunchConfig struct {
	QEMU      string `json:"qemu"`
	Virtiofsd string `json:"virtiofsd"`
	// Self is the dutchman binary, run as `dutchman vm-share` to prepare the share.
	Self      string `json:"self"`
	Kernel    string `json:"kernel"`
	Initramfs string `json:"initramfs"`
	Cmdline   string `json:"cmdline"`
	MemoryMiB int64  `json:"memoryMiB"`
	CPUs      int    `json:"cpus"`
	// KVM selects -accel kvm, with QEMU's CPU model CPU ("" for QEMU's default); TCG
	// otherwise.
	KVM bool   `json:"kvm,omitempty"`
	CPU string `json:"cpu,omitempty"`
	// Vsock, if set, carries the conversation with the agent instead of virtio-serial.
	Vsock *VsockConfig `json:"vsock,omitempty"`
	// Rootfs is the container's root filesystem on the host (the oci runtime's).
	Rootfs string `json:"rootfs"`
	Share  Share  `json:"share"`
	// Disks are block devices of the guest (the block-device root's).
	Disks []Disk `json:"disks,omitempty"`
	// Setup and Process are sent to the agent as they are: the container's mounts (the
	// share's paths as the guest sees them) and its main process.
	Setup   proto.Setup   `json:"setup"`
	Process proto.Process `json:"process"`
	// NetNS is the network namespace the container's taps are made in, beside the
	// interfaces the engine put there ("" for none).
	NetNS string `json:"netns,omitempty"`
}

// VsockConfig is the vsock address of the agent.
type VsockConfig struct {
	CID  uint32 `json:"cid"`
	Port uint32 `json:"port"`
}

// Share is the directory the guest mounts with virtio-fs: the container's root
// filesystem as root/ (unless the root is on disks), and the sources of its bind mounts
// beside it.
type Share struct {
	Rootfs string      `json:"rootfs,omitempty"`
	Binds  []ShareBind `json:"binds,omitempty"`
}

// ShareBind is a bind mount's source in the share, under Name.
type ShareBind struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Disk is a file the guest sees as a virtio block device, found there by its serial.
type Disk struct {
	Path     string `json:"path"`
	Serial   string `json:"serial"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

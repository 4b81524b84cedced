package vm

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// machine is what every guest of the runtime boots on, a container's VM and a KVM
// probe alike: a microvm with its accelerator, CPU model, memory, kernel and console.
type machine struct {
	name string
	kvm  bool
	// cpu is QEMU's -cpu model under KVM ("" for QEMU's default).
	cpu       string
	memoryMiB int64
	cpus      int
	kernel    string
	initramfs string
	cmdline   string
}

// QEMU's file descriptors: the agent's channel (unless vsock carries it), the serial
// console, and the taps from firstTapFd on.
const (
	agentFd    = 3
	consoleFd  = 4
	firstTapFd = 5
)

// args is the machine's part of QEMU's command line; the console is the socket at
// consoleFd.
func (m machine) args() []string {
	mem := strconv.FormatInt(m.memoryMiB, 10) + "M"
	accel := "tcg"
	if m.kvm {
		accel = "kvm"
	}
	args := []string{
		"-name", m.name,
		"-M", "microvm,x-option-roms=off,rtc=off,pit=off,pic=off,memory-backend=mem",
		"-accel", accel,
		"-m", mem, "-smp", strconv.Itoa(max(m.cpus, 1)),
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-global", "virtio-mmio.force-legacy=false",
		"-kernel", m.kernel, "-initrd", m.initramfs, "-append", m.cmdline,
		"-chardev", fmt.Sprintf("socket,id=console,fd=%d", consoleFd), "-serial", "chardev:console",
	}
	if m.kvm && m.cpu != "" {
		args = append(args, "-cpu", m.cpu)
	}
	return args
}

// serialArgs give the guest the agent's channel as a virtio-serial port, backed by the
// socket at agentFd.
func serialArgs(portName string) []string {
	return []string{"-device", "virtio-serial-device",
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", agentFd),
		"-device", "virtserialport,chardev=agent,name=" + portName}
}

// kernelParams are the guest kernel's parameters before the agent's own: its console,
// and a panic or the agent's power-off ending QEMU (reboot=t, with -no-reboot).
func kernelParams(kvm bool) []string {
	params := []string{"console=ttyS0", "reboot=t", "panic=-1", "quiet", "loglevel=3"}
	if !kvm {
		// Under TCG the kernel hangs calibrating the TSC without its frequency.
		if khz := hostTSCkHz(); khz > 0 {
			params = append(params, "tsc_early_khz="+strconv.Itoa(khz))
		}
	}
	return params
}

// qemuEnd says how QEMU ended, in its own words where it left any on stderr:
// "QEMU aborted: failed to set MSR 0x10a to 0x69".
func qemuEnd(ws unix.WaitStatus, stderr *tail) string {
	var how string
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGABRT:
		how = "QEMU aborted"
	case ws.Signaled():
		how = "QEMU was killed by " + unix.SignalName(ws.Signal())
	default:
		how = "QEMU exited with status " + strconv.Itoa(ws.ExitStatus())
	}
	if words := qemuWords(stderr); words != "" {
		how += ": " + words
	}
	return how
}

// qemuWords are QEMU's last messages on stderr, on one line: its errors rather than its
// warnings, without the program's name.
func qemuWords(stderr *tail) string {
	if stderr == nil {
		return ""
	}
	var errs, warnings []string
	for _, l := range stderr.lines(20) {
		if strings.HasPrefix(l, "qemu-system-") {
			if _, rest, ok := strings.Cut(l, ": "); ok {
				l = rest
			}
		}
		l = strings.TrimPrefix(l, "error: ")
		switch {
		case strings.HasPrefix(l, "terminating on signal"):
		case strings.HasPrefix(l, "warning: "):
			warnings = append(warnings, l)
		default:
			errs = append(errs, l)
		}
	}
	if len(errs) == 0 {
		errs = warnings
	}
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	return strings.Join(errs, "; ")
}

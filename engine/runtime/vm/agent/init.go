//go:build linux

package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/internal/reaper"
)

// Files of the initramfs the vm runtime builds.
const (
	// ModulesDir holds the kernel modules the agent loads, and ModulesOrder lists them,
	// one file name a line, each after the modules it depends on.
	ModulesDir   = "/lib/modules"
	ModulesOrder = "/lib/modules/order"
)

// Kernel command line parameters the vm runtime sets.
const (
	// ParamTransport is "serial" (a virtio-serial port named PortName) or "vsock".
	ParamTransport = "dutchman.transport"
	// ParamVsockPort is the vsock port the agent listens on.
	ParamVsockPort = "dutchman.vsock_port"
	// ParamShare is the virtio-fs tag of the share mounted at ShareDir.
	ParamShare = "dutchman.share"
)

// PortName is the name of the agent's virtio-serial port.
const PortName = "dutchman.agent"

// ShareDir is where the host's share is mounted in the guest: the container's root in
// ShareDir/root, its bind mounts' sources beside it.
const ShareDir = "/run/share"

// Init runs the agent as the guest's init, and never returns: the guest powers off (a
// reboot, which QEMU run with -no-reboot turns into its exit) when the conversation
// ends.
func Init() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := initGuest(log); err != nil {
		log.Error("dutchman-agent", "err", err)
	}
	powerOff()
}

func initGuest(log *slog.Logger) error {
	if err := mountBasics(); err != nil {
		return err
	}
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			unix.Dup2(int(f.Fd()), fd)
		}
		f.Close()
	}
	// Docker's default for containers; children inherit it (Go restores only a limit
	// it raised itself).
	unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1 << 20, Max: 1 << 20})
	params := kernelParams()
	if err := loadModules(log); err != nil {
		return err
	}
	if tag := params[ParamShare]; tag != "" {
		if err := os.MkdirAll(ShareDir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(tag, ShareDir, "virtiofs", 0, ""); err != nil {
			return fmt.Errorf("mount the share %s: %w", tag, err)
		}
	}
	ch, err := openChannel(params)
	if err != nil {
		return err
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	r := reaper.New()
	return Serve(ch, Options{Reaper: r, Log: log, Init: true, Kernel: unix.ByteSliceToString(uts.Release[:]),
		Shutdown: func() {
			unix.Kill(-1, unix.SIGKILL)
			r.Wait(100 * time.Millisecond)
			unix.Sync()
		}})
}

func powerOff() {
	unix.Sync()
	// reboot=t on the command line makes this a triple fault, which QEMU under
	// -no-reboot turns into its exit.
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func mountBasics() error {
	for _, m := range []struct{ src, dest, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666"},
		{"tmpfs", "/run", "tmpfs", "mode=755"},
	} {
		if err := os.MkdirAll(m.dest, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dest, m.typ, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dest, err)
		}
	}
	return nil
}

// kernelParams are the kernel command line's key=value words.
func kernelParams() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	params := map[string]string{}
	for _, w := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(w, "="); ok {
			params[k] = v
		}
	}
	return params
}

// loadModules loads the initramfs's modules in their order.
func loadModules(log *slog.Logger) error {
	f, err := os.Open(ModulesOrder)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		m, err := os.Open(filepath.Join(ModulesDir, name))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return sc.Err()
}

// openChannel opens the conversation's transport: the virtio-serial port, or the first
// connection to the vsock port.
func openChannel(params map[string]string) (io.ReadWriteCloser, error) {
	if params[ParamTransport] == "vsock" {
		port, err := strconv.ParseUint(params[ParamVsockPort], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad %s: %w", ParamVsockPort, err)
		}
		l, err := vsock.Listen(uint32(port), nil)
		if err != nil {
			return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
		}
		defer l.Close()
		for {
			c, err := l.Accept()
			if err != nil {
				return nil, err
			}
			// Only the host's root binds a port below 1024 there: anyone else on the
			// host could reach this port too.
			if a, ok := c.RemoteAddr().(*vsock.Addr); ok && a.ContextID == vsock.Host && a.Port < 1024 {
				return c, nil
			}
			c.Close()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, e := range ents {
			if b, err := os.ReadFile(e); err == nil && strings.TrimSpace(string(b)) == PortName {
				return os.OpenFile(filepath.Join("/dev", filepath.Base(filepath.Dir(e))), os.O_RDWR, 0)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %s", PortName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

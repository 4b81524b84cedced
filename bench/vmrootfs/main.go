//go:build linux

// Command vmrootfs measures the two ways a vm container's guest can see its root
// filesystem, in one VM under the same conditions: the share (virtio-fs, served by
// virtiofsd from the host's directory: the vm runtime's way) and a block device (the
// image as a read-only erofs image, with a per-container ext4 scratch disk as the
// writable layer of an overlay in the guest). It boots the Debian kernel of a .deb with
// dutchman-agent, runs the same commands on both roots, and prints the times, with the
// host's cost of making the two disk images.
//
//	vmrootfs -deb linux-image-...deb -agent bin/dutchman-agent -busybox /bin/busybox -work DIR
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/proto"
)

func main() {
	deb := flag.String("deb", "", "the kernel package")
	agent := flag.String("agent", "bin/dutchman-agent", "the guest agent")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox")
	work := flag.String("work", "/tmp/vmrootfs", "scratch directory (removed)")
	files := flag.Int("files", 5000, "small files in the root filesystem")
	bigMiB := flag.Int("big", 128, "MiB of the big file")
	rounds := flag.Int("rounds", 3, "rounds of each measure")
	flag.Parse()
	if err := run(*deb, *agent, *busybox, *work, *files, *bigMiB, *rounds); err != nil {
		log.Fatal(err)
	}
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func run(deb, agentPath, busybox, work string, nfiles, bigMiB, rounds int) error {
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if os.Getenv("KEEP") == "" {
		defer os.RemoveAll(work)
	}
	kdir := filepath.Join(work, "kernel")
	if err := sh("dpkg-deb", "-x", deb, kdir); err != nil {
		return err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return fmt.Errorf("no vmlinuz in %s", deb)
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	agent, err := os.ReadFile(agentPath)
	if err != nil {
		return err
	}
	var initrd bytes.Buffer
	mods := append(vm.DefaultModules(), "virtio_blk", "erofs", "overlay")
	if err := vm.WriteInitramfs(&initrd, agent, filepath.Join(kdir, "lib", "modules", release), mods); err != nil {
		return err
	}
	initrdPath := filepath.Join(work, "initrd.cpio")
	if err := os.WriteFile(initrdPath, initrd.Bytes(), 0o644); err != nil {
		return err
	}

	// The root filesystem: busybox, many small files, one big file.
	share := filepath.Join(work, "share")
	root := filepath.Join(share, "root")
	for _, d := range []string{"bin", "tmp", "data"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	if err := sh("cp", busybox, filepath.Join(root, "bin", "busybox")); err != nil {
		return err
	}
	for i := range nfiles {
		dir := filepath.Join(root, "data", strconv.Itoa(i%50))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), bytes.Repeat([]byte("x"), 1000+i%3000), 0o644)
	}
	if err := sh("dd", "if=/dev/urandom", "of="+filepath.Join(root, "big"), "bs=1M", "count="+strconv.Itoa(bigMiB), "status=none"); err != nil {
		return err
	}
	t0 := time.Now()
	erofs := filepath.Join(work, "image.erofs")
	if err := sh("mkfs.erofs", "--quiet", erofs, root); err != nil {
		return err
	}
	tErofs := time.Since(t0)
	t0 = time.Now()
	scratch := filepath.Join(work, "scratch.ext4")
	os.MkdirAll(filepath.Join(work, "scratchdir", "u"), 0o755)
	os.MkdirAll(filepath.Join(work, "scratchdir", "w"), 0o755)
	if err := sh("truncate", "-s", "1G", scratch); err != nil {
		return err
	}
	if err := sh("mkfs.ext4", "-q", "-d", filepath.Join(work, "scratchdir"), scratch); err != nil {
		return err
	}
	tExt4 := time.Since(t0)
	fmt.Printf("host: mkfs.erofs of the root filesystem (%d files, %d MiB) %v; a 1 GiB ext4 scratch disk %v\n", nfiles, bigMiB, tErofs.Round(time.Millisecond), tExt4.Round(time.Millisecond))

	// virtiofsd and QEMU, as the launcher runs them, plus the two disks.
	fsd := exec.Command("/usr/lib/qemu/virtiofsd", "--socket-path=fs.sock", "-o", "source="+share, "-o", "cache=auto",
		"-o", "announce_submounts", "-o", "xattr", "-o", "log_level=warn")
	fsd.Dir = work
	if err := fsd.Start(); err != nil {
		return err
	}
	defer func() { fsd.Process.Kill(); fsd.Wait() }()
	for range 500 {
		if _, err := os.Stat(filepath.Join(work, "fs.sock")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	hostF, guestF := os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest")
	khz := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				khz = int(f * 1000)
				break
			}
		}
	}
	q := exec.Command("qemu-system-x86_64",
		"-M", "microvm,x-option-roms=off,rtc=off,pit=off,pic=off,memory-backend=mem", "-accel", "tcg",
		"-m", "512M", "-smp", "1", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-global", "virtio-mmio.force-legacy=false",
		"-kernel", vmlinuz[0], "-initrd", initrdPath,
		"-append", fmt.Sprintf("console=ttyS0 reboot=t panic=-1 quiet loglevel=3 tsc_early_khz=%d dutchman.share=share dutchman.transport=serial", khz),
		"-serial", "file:"+filepath.Join(work, "console.log"),
		"-chardev", "socket,id=fs,path=fs.sock", "-device", "vhost-user-fs-device,chardev=fs,tag=share",
		"-device", "virtio-rng-device",
		"-drive", "file="+erofs+",if=none,id=ro,format=raw,readonly=on", "-device", "virtio-blk-device,drive=ro,serial=image",
		"-drive", "file="+scratch+",if=none,id=rw,format=raw", "-device", "virtio-blk-device,drive=rw,serial=scratch",
		"-device", "virtio-serial-device", "-chardev", "socket,id=agent,fd=3", "-device", "virtserialport,chardev=agent,name=dutchman.agent")
	q.Dir = work
	q.ExtraFiles = []*os.File{guestF}
	q.Stderr = os.Stderr
	if err := q.Start(); err != nil {
		return err
	}
	guestF.Close()
	defer func() { q.Process.Kill(); q.Wait() }()
	conn, err := net.FileConn(hostF)
	if err != nil {
		return err
	}
	c, err := proto.Handshake(conn)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// The block-device root as the runtime assembles it (blockRoot): the disks found by
	// their serials, an overlay of the two. The processes run chrooted in /run, where
	// both roots are: /share/root and /ovl.
	if err := c.Call(ctx, proto.OpSetup, proto.Setup{Root: "/run",
		RootMounts: []proto.Mount{
			{Destination: "/run/lower", Type: "erofs", Source: "serial:image", Options: []string{"ro"}},
			{Destination: "/run/upper", Type: "ext4", Source: "serial:scratch"},
			{Destination: "/run/ovl", Type: "overlay", Source: "overlay",
				Options: []string{"lowerdir=/run/lower", "upperdir=/run/upper/u", "workdir=/run/upper/w"}},
		},
		Mounts: []proto.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
	}, nil); err != nil {
		return err
	}
	var id uint32 = proto.MainProcess + 1 // no main process: its end would power the guest off
	guest := func(script string) (string, error) {
		var out, errb bytes.Buffer
		p, err := c.Start(ctx, &proto.Process{ID: id, Args: []string{"/share/root/bin/busybox", "sh", "-c", script},
			Env: []string{"PATH=/share/root/bin"}, Cwd: "/"}, &out, &errb)
		id++
		if err != nil {
			return "", err
		}
		st := <-p.Exit()
		if st.Code != 0 {
			return "", fmt.Errorf("%s: exit %d: %s%s", script, st.Code, out.String(), errb.String())
		}
		return out.String(), nil
	}
	bb := "/share/root/bin/busybox"
	measure := func(what, script string) {
		for _, r := range []struct{ name, dir string }{{"virtio-fs", "/share/root"}, {"erofs+ext4", "/ovl"}} {
			var times []string
			for i := range rounds {
				s := strings.ReplaceAll(strings.ReplaceAll(script, "ROOT", r.dir), "ROUND", strconv.Itoa(i))
				// busybox's date has no %N: /proc/uptime counts hundredths of a second.
				out, err := guest(fmt.Sprintf(`t() { %[1]s cut -d' ' -f1 /proc/uptime | %[1]s tr -d .; }; a=$(t); %[2]s >/dev/null; b=$(t); %[1]s echo $(( (b - a) * 10 ))`, bb, s))
				if err != nil {
					times = append(times, "error: "+err.Error())
					continue
				}
				times = append(times, strings.TrimSpace(out)+"ms")
			}
			fmt.Printf("%-48s %-11s %s\n", what, r.name, strings.Join(times, " "))
		}
	}
	fmt.Printf("guest (TCG), %d rounds each, the first one cold:\n", rounds)
	measure(fmt.Sprintf("walk: find of %d files", nfiles), bb+" find ROOT/data | "+bb+" wc -l")
	measure(fmt.Sprintf("stat: ls -lR of %d files", nfiles), bb+" ls -lR ROOT/data | "+bb+" wc -l")
	measure(fmt.Sprintf("read: cat of a %d MiB file", bigMiB), bb+" cat ROOT/big")
	measure(fmt.Sprintf("read: all %d small files, one process", nfiles), bb+" find ROOT/data -type f -exec "+bb+" cat {} +")
	measure("write: 500 small files (shell builtins)", "mkdir -p ROOT/tmp/ROUND; for i in $("+bb+" seq 500); do echo x > ROOT/tmp/ROUND/$i; done")
	measure("write: 64 MiB, fsync", bb+" dd if=/dev/zero of=ROOT/tmp/w bs=1M count=64 conv=fsync")
	c.Call(ctx, proto.OpShutdown, nil, nil)
	return nil
}

package vm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Modules the agent loads, with what they depend on, when the kernel does not have them
// built in: the virtio transport of microvm, the agent's channels, the share, the
// network, entropy.
var wantedModules = []string{
	"virtio_mmio", "virtio_console", "virtio_rng", "virtiofs", "virtio_net",
	"vmw_vsock_virtio_transport",
	// The block-device root: the image as erofs, the scratch disk as ext4, an overlay.
	"virtio_blk", "erofs", "ext4", "overlay",
}

// moduleName is the name the kernel knows a module file by.
func moduleName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
}

// moduleSet is a kernel's modules: the files by name, and the names built in.
type moduleSet struct {
	files   map[string]string
	builtin map[string]bool
	// depends reads what a module file depends on (moduleDepends).
	depends func(path string) ([]string, error)
}

// readModules indexes the modules under dir (lib/modules/RELEASE).
func readModules(dir string) (*moduleSet, error) {
	m := &moduleSet{files: map[string]string{}, builtin: map[string]bool{}, depends: moduleDepends}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			m.files[moduleName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			m.builtin[moduleName(line)] = true
		}
	}
	return m, nil
}

// moduleDepends reads the modules a module file depends on, from its .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, moduleName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// closure returns the files of the wanted modules and of what they depend on, each after
// its dependencies. A wanted module the kernel has neither built in nor as a file is an
// error.
func (m *moduleSet) closure(wanted []string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if seen[name] || m.builtin[name] {
			return nil
		}
		path, ok := m.files[name]
		if !ok {
			if len(chain) == 0 {
				return fmt.Errorf("the kernel has no module %s, nor has it built in", name)
			}
			return fmt.Errorf("module %s needs %s, which the kernel does not have", chain[len(chain)-1], name)
		}
		seen[name] = true
		deps, err := m.depends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		order = append(order, path)
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// cpioWriter writes a cpio archive in the "newc" format, the initramfs's.
type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	n   int64
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// entry writes one entry: its header, name and data.
func (c *cpioWriter) entry(name string, mode uint32, data []byte, rdevMajor, rdevMinor uint32) error {
	c.ino++
	nlink := 1
	if mode&cpioDir != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) close() error {
	c.ino = 0
	if err := c.entry("TRAILER!!!", 0, nil, 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

// writeInitramfs writes an initramfs whose /init is the agent binary, with the modules
// (in load order) under /lib/modules.
func writeInitramfs(w io.Writer, agent []byte, modules []string) error {
	c := &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "lib", "lib/modules"} {
		if err := c.entry(d, cpioDir|0o755, nil, 0, 0); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's standard streams before devtmpfs is up.
	if err := c.entry("dev/console", cpioChar|0o600, nil, 5, 1); err != nil {
		return err
	}
	if err := c.entry("init", cpioFile|0o755, agent, 0, 0); err != nil {
		return err
	}
	var order strings.Builder
	for _, p := range modules {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := filepath.Base(p)
		if err := c.entry("lib/modules/"+name, cpioFile|0o644, data, 0, 0); err != nil {
			return err
		}
		order.WriteString(name + "\n")
	}
	if err := c.entry("lib/modules/order", cpioFile|0o644, []byte(order.String()), 0, 0); err != nil {
		return err
	}
	return c.close()
}

// WriteInitramfs writes an initramfs with agent as /init and the modules named (with
// what they depend on) from the kernel modules under moduleDir (lib/modules/RELEASE).
// The runtime's own are built by Kernels.Boot; this is for tools and experiments that
// need other modules (bench/vmrootfs).
func WriteInitramfs(w io.Writer, agent []byte, moduleDir string, modules []string) error {
	files, err := moduleFiles(moduleDir, modules)
	if err != nil {
		return err
	}
	return writeInitramfs(w, agent, files)
}

// moduleFiles returns the files, in load order, of the wanted modules of the kernel
// modules under dir and of what they depend on.
func moduleFiles(dir string, wanted []string) ([]string, error) {
	set, err := readModules(dir)
	if err != nil {
		return nil, err
	}
	return set.closure(wanted)
}

// Modules the runtime's initramfs carries, for tools that add to them.
func DefaultModules() []string { return append([]string(nil), wantedModules...) }

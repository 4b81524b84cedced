package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Media types of a kernel artifact: an OCI image manifest whose config is of type
// MediaTypeKernelConfig (an OCI image config: os, architecture, and the kernel's release
// in the label LabelRelease), with one layer of each of the two other types: the
// kernel image (bzImage), and lib/modules/RELEASE as a gzipped tar.
const (
	MediaTypeKernelConfig = "application/vnd.flyingdutchman.kernel.config.v1+json"
	MediaTypeVmlinuz      = "application/vnd.flyingdutchman.kernel.vmlinuz.v1"
	MediaTypeModules      = "application/vnd.flyingdutchman.kernel.modules.v1.tar+gzip"
	LabelRelease          = "org.flyingdutchman.kernel.release"
)

// DefaultKernelSource is where a kernel comes from when a vm container needs one and
// none is there: Debian's cloud kernel, which has the virtio drivers as modules.
const DefaultKernelSource = "debian:linux-image-cloud-amd64"

// Kernel is a guest kernel in the cache.
type Kernel struct {
	// Name is the kernel's release, such as 6.1.0-56-cloud-amd64.
	Name string `json:"name"`
	// Source is where it came from: debian:PACKAGE, a .deb file, or REPOSITORY@DIGEST.
	Source  string    `json:"source"`
	Added   time.Time `json:"added"`
	Default bool      `json:"default,omitempty"`
	// Size is the bytes the kernel and its modules take in the cache.
	Size int64 `json:"size"`
}

// Registry reaches registries for kernel artifacts (the image store does).
type Registry interface {
	Remote(ctx context.Context, ref string) (name.Reference, []remote.Option, error)
}

// Kernels is the kernel cache: each kernel in a directory of its own (kernel.json,
// vmlinuz, the modules the agent loads, and initramfs images built for the agent),
// and the name of the default in a file "default".
type Kernels struct {
	root     string
	agent    string
	auto     string
	registry Registry
	log      *slog.Logger

	// mu guards the cache's files and the agent's digest; fetch serializes downloads
	// (held without mu, so that listing the cache never waits for a download).
	mu        sync.Mutex
	fetch     sync.Mutex
	agentStat os.FileInfo
	agentSum  string
	// onDefault is called once a kernel became the default (under mu).
	onDefault func()
}

// setOnDefault has f called whenever a kernel becomes the default.
func (k *Kernels) setOnDefault(f func()) {
	k.mu.Lock()
	k.onDefault = f
	k.mu.Unlock()
}

// NewKernels opens the kernel cache in root. agent is the dutchman-agent binary put in
// initramfs images; auto is the source fetched when a kernel is needed and none is the
// default (DefaultKernelSource if empty).
func NewKernels(root, agent, auto string, registry Registry, log *slog.Logger) (*Kernels, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	if auto == "" {
		auto = DefaultKernelSource
	}
	if log == nil {
		log = slog.Default()
	}
	// What an interrupted import left.
	if leftovers, _ := filepath.Glob(filepath.Join(root, ".import-*")); len(leftovers) > 0 {
		for _, l := range leftovers {
			os.RemoveAll(l)
		}
	}
	return &Kernels{root: root, agent: agent, auto: auto, registry: registry, log: log}, nil
}

var kernelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

func checkKernelName(name string) error {
	// The names of kernels/'s own files are not kernels'.
	if !kernelNameRE.MatchString(name) || len(name) > 128 || name == "ctl" || name == "error" || name == "default" {
		return errdefs.Invalid(fmt.Errorf("invalid kernel name %q", name))
	}
	return nil
}

func (k *Kernels) dir(name string) string { return filepath.Join(k.root, name) }

// List returns the kernels in the cache, by name.
func (k *Kernels) List() ([]Kernel, error) {
	ents, err := os.ReadDir(k.root)
	if err != nil {
		return nil, err
	}
	def := k.defaultName()
	var out []Kernel
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		kern, err := k.read(e.Name())
		if err != nil {
			continue
		}
		kern.Default = kern.Name == def
		out = append(out, *kern)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (k *Kernels) read(name string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(k.dir(name), "kernel.json"))
	if err != nil {
		return nil, err
	}
	var kern Kernel
	if err := json.Unmarshal(b, &kern); err != nil {
		return nil, err
	}
	return &kern, nil
}

func (k *Kernels) defaultName() string {
	b, _ := os.ReadFile(filepath.Join(k.root, "default"))
	return strings.TrimSpace(string(b))
}

// Get returns the kernel name, or the default for "".
func (k *Kernels) Get(name string) (*Kernel, error) {
	if name == "" {
		if name = k.defaultName(); name == "" {
			return nil, errdefs.NotFound(errors.New("no default kernel"))
		}
	}
	if err := checkKernelName(name); err != nil {
		return nil, err
	}
	kern, err := k.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound(fmt.Errorf("no kernel %s", name))
	}
	if err != nil {
		return nil, err
	}
	kern.Default = kern.Name == k.defaultName()
	return kern, nil
}

// Modules lists the module files of kernel name that the agent loads, in load order.
func (k *Kernels) Modules(name string) ([]string, error) {
	if err := checkKernelName(name); err != nil {
		return nil, err
	}
	files, err := moduleFiles(filepath.Join(k.dir(name), "modules"), wantedModules)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = filepath.Base(f)
	}
	return out, nil
}

// Ensure returns the default kernel, fetching the automatic source first if there is
// none: the first vm container of a machine waits for its kernel.
func (k *Kernels) Ensure(ctx context.Context) (*Kernel, error) {
	if kern, err := k.Get(""); err == nil {
		return kern, nil
	}
	k.fetch.Lock()
	defer k.fetch.Unlock()
	if kern, err := k.Get(""); err == nil {
		return kern, nil
	}
	k.log.Info("fetching a kernel for the vm runtime", "source", k.auto)
	kern, err := k.pullLocked(ctx, k.auto)
	if err != nil {
		return nil, fmt.Errorf("fetch a kernel from %s: %w", k.auto, err)
	}
	if err := k.SetDefault(kern.Name); err != nil {
		return nil, err
	}
	kern.Default = true
	return kern, nil
}

// Pull fetches a kernel from source: "debian" or "debian:PACKAGE" (apt-get download),
// the path of a kernel .deb, or the reference of a kernel artifact in a registry. The
// first kernel in the cache becomes the default.
func (k *Kernels) Pull(ctx context.Context, source string) (*Kernel, error) {
	k.fetch.Lock()
	defer k.fetch.Unlock()
	kern, err := k.pullLocked(ctx, source)
	if err != nil {
		return nil, err
	}
	if k.defaultName() == "" {
		if err := k.SetDefault(kern.Name); err != nil {
			return nil, err
		}
		kern.Default = true
	}
	return kern, nil
}

func (k *Kernels) pullLocked(ctx context.Context, source string) (*Kernel, error) {
	tmp, err := os.MkdirTemp(k.root, ".import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	var src string
	if isDebianSource(source) {
		src, err = fetchDebian(ctx, source, tree)
	} else {
		src, err = k.fetchArtifact(ctx, source, tree)
	}
	if err != nil {
		return nil, err
	}
	return k.importTree(tree, src, filepath.Join(tmp, "kernel"))
}

func isDebianSource(s string) bool {
	return s == "debian" || strings.HasPrefix(s, "debian:") || strings.HasSuffix(s, ".deb")
}

// importTree takes a kernel from tree (boot/vmlinuz-RELEASE, lib/modules/RELEASE) into
// the cache, through staging (a directory on the cache's filesystem).
func (k *Kernels) importTree(tree, source, staging string) (*Kernel, error) {
	vmlinuz, release, err := findVmlinuz(tree)
	if err != nil {
		return nil, err
	}
	if err := checkKernelName(release); err != nil {
		return nil, err
	}
	moddir := filepath.Join(tree, "lib", "modules", release)
	files, err := moduleFiles(moddir, wantedModules)
	if err != nil {
		return nil, fmt.Errorf("the kernel's modules: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(staging, "modules"), 0o755); err != nil {
		return nil, err
	}
	size, err := copyFile(vmlinuz, filepath.Join(staging, "vmlinuz"))
	if err != nil {
		return nil, err
	}
	for _, f := range append(files, filepath.Join(moddir, "modules.builtin")) {
		rel, _ := filepath.Rel(moddir, f)
		dest := filepath.Join(staging, "modules", rel)
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return nil, err
		}
		n, err := copyFile(f, dest)
		if err != nil && !(errors.Is(err, fs.ErrNotExist) && filepath.Base(f) == "modules.builtin") {
			return nil, err
		}
		size += n
	}
	kern := &Kernel{Name: release, Source: source, Added: time.Now().UTC(), Size: size}
	b, _ := json.MarshalIndent(kern, "", "  ")
	if err := os.WriteFile(filepath.Join(staging, "kernel.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	dest := k.dir(release)
	if _, err := os.Stat(dest); err == nil {
		// The same release again: the new copy replaces the old.
		old := staging + ".old"
		if err := os.Rename(dest, old); err != nil {
			return nil, err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(staging, dest); err != nil {
		return nil, err
	}
	return kern, nil
}

// findVmlinuz finds boot/vmlinuz-RELEASE in tree.
func findVmlinuz(tree string) (string, string, error) {
	found, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if len(found) != 1 {
		return "", "", errdefs.Invalid(fmt.Errorf("the kernel package has %d boot/vmlinuz-* files, not one", len(found)))
	}
	return found[0], strings.TrimPrefix(filepath.Base(found[0]), "vmlinuz-"), nil
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// Remove removes a kernel from the cache. Removing the default leaves none: the next vm
// container fetches the automatic source again, unless another is made the default.
func (k *Kernels) Remove(name string) error {
	unlock, err := k.lockKernel(name)
	if err != nil {
		return err
	}
	defer unlock()
	if k.defaultName() == name {
		os.Remove(filepath.Join(k.root, "default"))
	}
	tmp := filepath.Join(k.root, ".import-rm-"+name)
	if err := os.Rename(k.dir(name), tmp); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// SetDefault makes name the default kernel.
func (k *Kernels) SetDefault(name string) error {
	unlock, err := k.lockKernel(name)
	if err != nil {
		return err
	}
	defer unlock()
	tmp := filepath.Join(k.root, ".default.tmp")
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(k.root, "default")); err != nil {
		return err
	}
	if k.onDefault != nil {
		k.onDefault()
	}
	return nil
}

// lockKernel takes the cache's lock for a change to kernel name, which must exist.
func (k *Kernels) lockKernel(name string) (unlock func(), err error) {
	if err := checkKernelName(name); err != nil {
		return nil, err
	}
	k.mu.Lock()
	if _, err := os.Stat(filepath.Join(k.dir(name), "kernel.json")); err != nil {
		k.mu.Unlock()
		return nil, errdefs.NotFound(fmt.Errorf("no kernel %s", name))
	}
	return k.mu.Unlock, nil
}

// Boot returns the files QEMU boots kern with: its kernel image and an initramfs with
// the current agent, built on first need (and again whenever the agent changes).
func (k *Kernels) Boot(kern *Kernel) (vmlinuz, initramfs string, err error) {
	sum, err := k.agentDigest()
	if err != nil {
		return "", "", fmt.Errorf("the vm runtime needs the guest agent, dutchman-agent (`make build` puts it beside dutchman): %w", err)
	}
	dir := k.dir(kern.Name)
	initramfs = filepath.Join(dir, "initramfs-"+sum+".cpio")
	vmlinuz = filepath.Join(dir, "vmlinuz")
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := os.Stat(initramfs); err == nil {
		return vmlinuz, initramfs, nil
	}
	files, err := moduleFiles(filepath.Join(dir, "modules"), wantedModules)
	if err != nil {
		// A kernel cached by a dutchman whose agent loaded fewer modules.
		return "", "", fmt.Errorf("kernel %s (from %s): %w; pull it again: dutchman kernel pull %s", kern.Name, kern.Source, err, kern.Source)
	}
	agent, err := os.ReadFile(k.agent)
	if err != nil {
		return "", "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "initramfs-*.cpio"))
	f, err := os.CreateTemp(dir, ".initramfs-")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(f.Name())
	err = writeInitramfs(f, agent, files)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("build the initramfs: %w", err)
	}
	if err := os.Rename(f.Name(), initramfs); err != nil {
		return "", "", err
	}
	for _, o := range old {
		os.Remove(o)
	}
	return vmlinuz, initramfs, nil
}

// agentDigest names the agent binary's initramfs: the first 16 hex digits of its
// sha256, read again only when the file's size or time changes (a start would otherwise
// read and hash 3 MB every time).
func (k *Kernels) agentDigest() (string, error) {
	st, err := os.Stat(k.agent)
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.agentStat != nil && os.SameFile(st, k.agentStat) && st.Size() == k.agentStat.Size() && st.ModTime().Equal(k.agentStat.ModTime()) {
		return k.agentSum, nil
	}
	f, err := os.Open(k.agent)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	k.agentStat, k.agentSum = st, hex.EncodeToString(h.Sum(nil)[:8])
	return k.agentSum, nil
}

// fetchDebian gets a kernel package (source "debian", "debian:PACKAGE" or a .deb file)
// and unpacks it into tree. A meta package (linux-image-cloud-amd64) is followed to the
// kernel package it depends on.
func fetchDebian(ctx context.Context, source, tree string) (string, error) {
	work, err := os.MkdirTemp(filepath.Dir(tree), "deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	deb := source
	if !strings.HasSuffix(source, ".deb") {
		pkg := strings.TrimPrefix(strings.TrimPrefix(source, "debian"), ":")
		if pkg == "" {
			pkg = strings.TrimPrefix(DefaultKernelSource, "debian:")
		}
		if deb, err = aptDownload(ctx, work, pkg); err != nil {
			return "", err
		}
	}
	for range 2 {
		if err := run(ctx, "", "dpkg-deb", "-x", deb, tree); err != nil {
			return "", err
		}
		if _, _, err := findVmlinuz(tree); err == nil {
			return debSource(source, deb), nil
		}
		// A meta package: its kernel is a dependency.
		out, err := exec.CommandContext(ctx, "dpkg-deb", "-f", deb, "Depends").Output()
		if err != nil {
			return "", fmt.Errorf("dpkg-deb -f %s Depends: %w", deb, err)
		}
		dep := kernelDependency(string(out))
		if dep == "" {
			return "", errdefs.Invalid(fmt.Errorf("%s holds no kernel and depends on none", filepath.Base(deb)))
		}
		if deb, err = aptDownload(ctx, work, dep); err != nil {
			return "", err
		}
	}
	return "", errdefs.Invalid(fmt.Errorf("no kernel found in %s", source))
}

func debSource(source, deb string) string {
	if strings.HasSuffix(source, ".deb") {
		return source
	}
	return "debian:" + strings.TrimSuffix(filepath.Base(deb), ".deb")
}

// kernelDependency picks the linux-image package out of a Depends field.
func kernelDependency(depends string) string {
	for _, alt := range strings.FieldsFunc(depends, func(r rune) bool { return r == ',' || r == '|' }) {
		name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
		if strings.HasPrefix(name, "linux-image-") {
			return name
		}
	}
	return ""
}

// aptDownload downloads pkg's .deb into dir with apt-get download.
func aptDownload(ctx context.Context, dir, pkg string) (string, error) {
	if !debianPackageRE.MatchString(pkg) {
		return "", errdefs.Invalid(fmt.Errorf("invalid Debian package name %q", pkg))
	}
	if err := run(ctx, dir, "apt-get", "download", "-q", pkg); err != nil {
		return "", fmt.Errorf("%w (is the package known? `apt-get update` refreshes the lists)", err)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	return debs[0], nil
}

var debianPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		var kept []string
		for _, l := range strings.Split(msg, "\n") {
			// apt-get download as root warns that it cannot drop privileges: noise.
			if !strings.Contains(l, "unsandboxed as root") {
				kept = append(kept, l)
			}
		}
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.Join(kept, "; "))
	}
	return nil
}

// hostArch is the architecture of kernel artifacts this machine runs.
var hostArch = goruntime.GOARCH

// Limits on what a kernel artifact's modules may unpack to, all layers together.
const (
	maxModulesSize    = 1 << 30
	maxModulesEntries = 100000
)

// unpackBudget is what the modules layers of one pull may still unpack.
type unpackBudget struct {
	left    int64
	entries int
}

// untarModules unpacks a modules layer into dir, within budget. Entries may only be
// directories and regular files below dir: anything else (links, devices, paths out of
// dir) fails the pull, as a hostile image layer does.
func untarModules(r io.Reader, dir string, budget *unpackBudget) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if budget.entries++; budget.entries > maxModulesEntries {
			return errdefs.Invalid(fmt.Errorf("kernel artifact: the modules hold more than %d entries", maxModulesEntries))
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return errdefs.Invalid(fmt.Errorf("kernel artifact: entry %q leads out of the modules directory", h.Name))
		}
		dest := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dest, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if budget.left -= h.Size; budget.left < 0 {
				return errdefs.Invalid(errors.New("kernel artifact: the modules unpack to more than 1 GiB"))
			}
			if _, err := writeReader(io.LimitReader(tr, h.Size), dest); err != nil {
				return err
			}
		default:
			return errdefs.Invalid(fmt.Errorf("kernel artifact: entry %q is neither a file nor a directory", h.Name))
		}
	}
}

// tarModules writes dir as a tar stream of relative paths.
func tarModules(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), 0, 0, "", ""
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, bytes.NewReader(b))
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// fetchArtifact pulls the kernel artifact ref into tree (boot/vmlinuz-RELEASE,
// lib/modules/RELEASE) and returns its source: the repository at the manifest's digest.
func (k *Kernels) fetchArtifact(ctx context.Context, ref, tree string) (string, error) {
	if k.registry == nil {
		return "", errors.New("no registry access")
	}
	r, opts, err := k.registry.Remote(ctx, ref)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	if m.Config.MediaType != MediaTypeKernelConfig {
		return "", errdefs.Invalid(fmt.Errorf("%s is not a kernel artifact: its config is of type %s, not %s", ref, m.Config.MediaType, MediaTypeKernelConfig))
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("pull %s: config: %w", ref, err)
	}
	release := cfg.Config.Labels[LabelRelease]
	if err := checkKernelName(release); err != nil {
		return "", fmt.Errorf("%s: the kernel's release: %w", ref, err)
	}
	if cfg.Architecture != hostArch {
		return "", errdefs.Invalid(fmt.Errorf("%s is a kernel for %s, this machine runs %s", ref, cfg.Architecture, hostArch))
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	var haveKernel, haveModules bool
	budget := &unpackBudget{left: maxModulesSize}
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return "", err
		}
		rc, err := l.Compressed()
		if err != nil {
			return "", fmt.Errorf("pull %s: %w", ref, err)
		}
		switch mt {
		case MediaTypeVmlinuz:
			if haveKernel {
				err = errdefs.Invalid(errors.New("a second kernel image"))
				break
			}
			var n int64
			n, err = writeReader(io.LimitReader(rc, maxKernelSize+1), filepath.Join(tree, "boot", "vmlinuz-"+release))
			if err == nil && n > maxKernelSize {
				err = errdefs.Invalid(errors.New("the kernel image is over 256 MiB"))
			}
			haveKernel = err == nil
		case MediaTypeModules:
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(rc); err == nil {
				err = untarModules(zr, filepath.Join(tree, "lib", "modules", release), budget)
			}
			haveModules = err == nil
		}
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("pull %s: layer %s: %w", ref, mt, err)
		}
	}
	if !haveKernel || !haveModules {
		return "", errdefs.Invalid(fmt.Errorf("%s lacks its kernel image or its modules", ref))
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().String() + "@" + digest.String(), nil
}

// writeReader writes what r reads into a new file dest, and returns how many bytes.
func writeReader(r io.Reader, dest string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// maxKernelSize bounds a kernel artifact's kernel image.
const maxKernelSize = 256 << 20

// PushKernel makes a kernel artifact from a Debian kernel package (source as for Pull:
// "debian[:PACKAGE]" or a .deb file) and pushes it to ref. It returns the manifest's
// digest.
func PushKernel(ctx context.Context, registry Registry, source, ref string) (string, error) {
	if !isDebianSource(source) {
		return "", errdefs.Invalid(fmt.Errorf("a kernel artifact is made from a Debian kernel package (debian:PACKAGE or a .deb file), not %q", source))
	}
	tmp, err := os.MkdirTemp("", "dutchman-kernel-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if _, err := fetchDebian(ctx, source, tree); err != nil {
		return "", err
	}
	vmlinuz, release, err := findVmlinuz(tree)
	if err != nil {
		return "", err
	}
	kernel, err := os.ReadFile(vmlinuz)
	if err != nil {
		return "", err
	}
	var modules bytes.Buffer
	zw := gzip.NewWriter(&modules)
	if err := tarModules(zw, filepath.Join(tree, "lib", "modules", release)); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: hostArch,
		Config: v1.Config{Labels: map[string]string{LabelRelease: release}}})
	if err != nil {
		return "", err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, MediaTypeKernelConfig)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: static.NewLayer(kernel, MediaTypeVmlinuz)},
		mutate.Addendum{Layer: static.NewLayer(modules.Bytes(), MediaTypeModules)})
	if err != nil {
		return "", err
	}
	r, opts, err := registry.Remote(ctx, ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// kernelsDir is kernels/: the vm runtime's guest kernels, a directory each (kernel.json,
// modules), the default's name in default, and ctl (pull SOURCE | rm NAME | default NAME).
func (t *tree) kernelsDir() *dirNode {
	fixed := []entry{
		{name: "ctl", mode: syscall.S_IFREG | 0o644, key: "kernels/ctl", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.kernelsCtl() }},
		t.value("error", "kernels/error", func(context.Context) ([]byte, error) { return line(t.kernelErr.get()), nil }),
		t.value("default", "kernels/default", func(context.Context) ([]byte, error) {
			ks, err := t.eng.Kernels()
			if err != nil {
				return nil, nil
			}
			k, err := ks.Get("")
			if err != nil {
				return nil, nil
			}
			return line(k.Name), nil
		}),
	}
	list := func(context.Context) ([]entry, error) {
		out := append([]entry(nil), fixed...)
		if ks, err := t.eng.Kernels(); err == nil {
			kernels, _ := ks.List()
			for _, k := range kernels {
				out = append(out, t.kernelEntry(k.Name))
			}
		}
		return out, nil
	}
	find := func(ctx context.Context, name string) (entry, bool, error) {
		if e, ok, _ := fixedFind(fixed)(ctx, name); ok {
			return e, true, nil
		}
		ks, err := t.eng.Kernels()
		if err != nil {
			return entry{}, false, nil
		}
		if _, err := ks.Get(name); err != nil {
			return entry{}, false, nil
		}
		return t.kernelEntry(name), true, nil
	}
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o755, entries: list, find: find}
}

// kernelEntry is the directory of kernel name: kernel.json, and modules (the modules the
// agent loads, one file a line).
func (t *tree) kernelEntry(name string) entry {
	key := "kernel@" + name
	return t.dir(name, key, stableTimeout, func() *dirNode {
		get := func() (*vm.Kernel, error) {
			ks, err := t.eng.Kernels()
			if err != nil {
				return nil, err
			}
			return ks.Get(name)
		}
		files := []entry{
			t.value("kernel.json", key+"/kernel.json", func(context.Context) ([]byte, error) {
				k, err := get()
				if err != nil {
					return nil, err
				}
				b, err := json.MarshalIndent(k, "", "  ")
				return append(b, '\n'), err
			}),
			t.value("modules", key+"/modules", func(context.Context) ([]byte, error) {
				ks, err := t.eng.Kernels()
				if err != nil {
					return nil, err
				}
				mods, err := ks.Modules(name)
				if err != nil {
					return nil, err
				}
				return []byte(strings.Join(mods, "\n") + "\n"), nil
			}),
		}
		return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(context.Context) ([]entry, error) { return files, nil }, find: fixedFind(files)}
	})
}

// kernelsCtl is kernels/ctl.
func (t *tree) kernelsCtl() *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(ctx context.Context) string { return "pull SOURCE\nrm NAME\ndefault NAME\n" },
		run: func(ctx context.Context, verb string, args []string) error {
			ks, err := t.eng.Kernels()
			if err != nil {
				return err
			}
			// Kernels are the machine's, shared by every tree and every vm container:
			// root's to change, as the daemon's own settings are.
			if t.uid != 0 {
				return errdefs.Invalid(errors.New("kernels: the kernels are shared by every tree, and only root changes them (root's tree, or dutchman kernel as root)"))
			}
			if len(args) != 1 {
				return errdefs.Invalid(fmt.Errorf("kernels: %s takes one argument: pull SOURCE | rm NAME | default NAME", verb))
			}
			switch verb {
			case "pull":
				if strings.HasSuffix(args[0], ".deb") && !filepath.IsAbs(args[0]) {
					return errdefs.Invalid(fmt.Errorf("kernels: %s: a package file is named by its absolute path", args[0]))
				}
				if strings.HasSuffix(args[0], ".deb") {
					if _, err := os.Stat(args[0]); err != nil {
						return errdefs.Invalid(err)
					}
				}
				_, err := ks.Pull(ctx, args[0])
				return err
			case "rm":
				return ks.Remove(args[0])
			case "default":
				return ks.SetDefault(args[0])
			}
			return errdefs.Invalid(fmt.Errorf("kernels: unknown verb %q: the verbs are pull SOURCE, rm NAME, default NAME", verb))
		},
		failed: func(_ string, err error) { t.kernelErr.set(err.Error()) },
	}
}

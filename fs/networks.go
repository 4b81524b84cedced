package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// networksDir is networks/: one directory per network, holding config.json (driver,
// subnet, gateway, bridge) and containers (its members, "NAME IP" a line). mkdir makes
// a network; rmdir removes one (EBUSY while a container names it). The message of a
// failed mkdir or rmdir is in networks/error and in events.
type networksDir struct {
	dirNode
}

var (
	_ gofs.NodeMkdirer = (*networksDir)(nil)
	_ gofs.NodeRmdirer = (*networksDir)(nil)
)

func (t *tree) networksDir() gofs.InodeEmbedder {
	errFile := t.value("error", "networks/error", func(context.Context) ([]byte, error) { return line(t.networkErr.get()), nil })
	find := func(ctx context.Context, name string) (entry, bool, error) {
		if name == "error" {
			return errFile, true, nil
		}
		n, err := t.eng.Networks().Get(name)
		if errors.Is(err, errdefs.ErrNotFound) {
			return entry{}, false, nil
		}
		if err != nil {
			return entry{}, false, err
		}
		return t.networkEntry(n), true, nil
	}
	list := func(ctx context.Context) ([]entry, error) {
		ns, err := t.eng.Networks().List()
		if err != nil {
			return nil, err
		}
		out := []entry{errFile}
		for _, n := range ns {
			if n.Name != "error" {
				out = append(out, t.networkEntry(n))
			}
		}
		return out, nil
	}
	return &networksDir{dirNode{virtualNode: virtualNode{t: t}, perm: 0o755, entries: list, find: find}}
}

// networkEntry is the directory of network n, whose inode is that of its ID.
func (t *tree) networkEntry(n *network.Network) entry {
	name, key := n.Name, "network@"+n.ID
	return t.dir(name, key, stableTimeout, func() *dirNode {
		files := []entry{
			t.valueOf(valueFixed, "config.json", key+"/config.json", func(context.Context) ([]byte, error) {
				b, err := json.MarshalIndent(map[string]any{
					"name": n.Name, "id": n.ID, "driver": n.Driver, "subnet": n.Subnet, "gateway": n.Gateway,
					"bridge": n.Bridge, "labels": n.Labels, "created": n.Created,
				}, "", "  ")
				return append(b, '\n'), err
			}),
			t.value("containers", key+"/containers", func(context.Context) ([]byte, error) {
				info, err := t.eng.Network(name)
				if err != nil {
					return nil, err
				}
				var b strings.Builder
				for _, m := range info.Containers {
					fmt.Fprintf(&b, "%s %s\n", m.Name, m.IP)
				}
				return []byte(b.String()), nil
			}),
		}
		return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(context.Context) ([]entry, error) { return files, nil }, find: fixedFind(files)}
	})
}

func (d *networksDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t := d.t
	if name == "error" {
		return nil, syscall.EEXIST
	}
	if _, err := t.eng.Networks().Get(name); err == nil {
		return nil, syscall.EEXIST
	}
	info, err := t.eng.CreateNetwork(name, network.CreateOptions{})
	if err != nil {
		t.networkErr.set(err.Error())
		return nil, toErrno(err)
	}
	t.networkErr.set("")
	return t.newChild(ctx, &d.Inode, t.networkEntry(&info.Network), out)
}

// Rmdir removes a network: EBUSY while a container names it.
func (d *networksDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	t := d.t
	if name == "error" {
		return syscall.ENOTDIR
	}
	if err := t.eng.RemoveNetwork(name); err != nil {
		t.networkErr.set(err.Error())
		return toErrno(err)
	}
	t.networkErr.set("")
	return 0
}

package fs

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// newRoot makes the root of the tree, backed by the directory backing (where the scratch
// files people leave at the top live: .Trash-1000/, .DS_Store). Each top-level directory
// is one line of the table, so volumes, compose and the rest plug in beside containers
// and images.
func (t *tree) newRoot(backing string, dev uint64) *backedDir {
	// Paths under the backing directory are resolved in its jail, where it is "/": the
	// tree's owner must not lead the daemon, which runs as root, anywhere else (by
	// swapping a directory for a symbolic link while an operation is on its way).
	t.backingDir = &passDir{t: t, state: newRootfsState(backing, "")}
	t.backing = &gofs.LoopbackRoot{Path: t.backingDir.rootPath("/"), Dev: dev}
	entries := []entry{
		t.value("README.md", "README.md", func(context.Context) ([]byte, error) { return []byte(Readme(true)), nil }),
		t.value("info", "info", t.renderInfo),
		t.stream("events", "events", func() (string, error) { return t.eng.EventsFile(), nil }),
		{name: "containers", mode: syscall.S_IFDIR | 0o755, key: "containers", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.containersDir() }},
		t.dir("images", "images", stableTimeout, func() *dirNode { return t.imagesDir() }),
		{name: "volumes", mode: syscall.S_IFDIR | 0o755, key: "volumes", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.volumesDir() }},
		{name: "networks", mode: syscall.S_IFDIR | 0o755, key: "networks", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.networksDir() }},
		{name: "compose", mode: syscall.S_IFDIR | 0o755, key: "compose", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.composeDir() }},
		{name: "builds", mode: syscall.S_IFDIR | 0o755, key: "builds", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.buildsDir() }},
		t.dir("kernels", "kernels", stableTimeout, func() *dirNode { return t.kernelsDir() }),
	}
	root := t.newBackedDir(t.backing, false, func(context.Context) ([]entry, error) { return entries, nil }, fixedFind(entries))
	// The tree holds the containers' environments and logs: it is its owner's alone,
	// as a home directory is.
	root.perm = 0o700
	t.backing.RootNode = root
	t.root = root
	return root
}

// fixedFind looks a name up in a fixed list of entries.
func fixedFind(entries []entry) func(ctx context.Context, name string) (entry, bool, error) {
	return func(ctx context.Context, name string) (entry, bool, error) {
		for _, e := range entries {
			if e.name == name {
				return e, true, nil
			}
		}
		return entry{}, false, nil
	}
}

// invalidate tells the kernel that names of containers/ changed behind its back (the
// daemon wrote a spec file, a container went).
func (t *tree) invalidate(names ...string) {
	dir := t.root.EmbeddedInode().GetChild("containers")
	if dir == nil {
		return
	}
	for _, n := range names {
		dir.NotifyEntry(n)
	}
}

// renderInfo is the info file: "key: value" lines, as /proc/meminfo.
func (t *tree) renderInfo(ctx context.Context) ([]byte, error) {
	info, err := t.eng.Info(ctx)
	if err != nil {
		return nil, err
	}
	runtimes := append([]string(nil), info.Runtimes...)
	sort.Strings(runtimes)
	var vmLines [][2]any
	if v := info.VM; v != nil {
		vmLines = [][2]any{{"vm_accel", v.Accel}, {"vm_accel_setting", v.Setting}, {"vm_cpu", v.CPU}, {"vm_accel_reason", v.Reason}}
	}
	var b strings.Builder
	for _, kv := range slices.Concat([][2]any{
		{"version", info.Version},
		{"os", info.OS},
		{"arch", info.Arch},
		{"data_root", info.DataRoot},
		{"mount", t.mountpoint},
		{"storage_driver", info.StorageDriver},
		{"runtimes", strings.Join(runtimes, " ")},
		{"default_runtime", info.DefaultRuntime},
	}, vmLines, [][2]any{
		{"insecure_registries", strings.Join(info.InsecureRegistries, " ")},
		{"builder", info.Builder},
		{"containers", info.Containers},
		{"containers_running", info.ContainersRunning},
		{"containers_paused", info.ContainersPaused},
		{"containers_stopped", info.ContainersStopped},
		{"images", info.Images},
		{"layers", info.Snapshots},
		{"blobs", info.Blobs},
	}) {
		fmt.Fprintf(&b, "%s: %v\n", kv[0], kv[1])
	}
	return []byte(b.String()), nil
}

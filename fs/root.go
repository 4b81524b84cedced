package fs

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// newRoot makes the root of the tree. Each top-level directory is one line of the table,
// so volumes, compose and the rest plug in beside containers and images.
func (t *tree) newRoot() *dirNode {
	entries := []entry{
		t.value("README.md", "README.md", func(context.Context) ([]byte, error) { return []byte(Readme(true)), nil }),
		t.value("info", "info", t.renderInfo),
		t.stream("events", "events", func() (string, error) { return t.eng.EventsFile(), nil }),
		t.dir("containers", "containers", stableTimeout, func() *dirNode { return t.containersDir() }),
		t.dir("images", "images", stableTimeout, func() *dirNode { return t.imagesDir() }),
	}
	return &dirNode{t: t, perm: 0o555, entries: func(context.Context) ([]entry, error) { return entries, nil }}
}

// renderInfo is the info file: "key: value" lines, as /proc/meminfo.
func (t *tree) renderInfo(ctx context.Context) ([]byte, error) {
	info, err := t.eng.Info(ctx)
	if err != nil {
		return nil, err
	}
	runtimes := append([]string(nil), info.Runtimes...)
	sort.Strings(runtimes)
	var b strings.Builder
	for _, kv := range [][2]any{
		{"version", info.Version},
		{"os", info.OS},
		{"arch", info.Arch},
		{"data_root", info.DataRoot},
		{"mount", t.mountpoint},
		{"storage_driver", info.StorageDriver},
		{"runtimes", strings.Join(runtimes, " ")},
		{"insecure_registries", strings.Join(info.InsecureRegistries, " ")},
		{"containers", info.Containers},
		{"containers_running", info.ContainersRunning},
		{"containers_paused", info.ContainersPaused},
		{"containers_stopped", info.ContainersStopped},
		{"images", info.Images},
		{"layers", info.Snapshots},
		{"blobs", info.Blobs},
	} {
		fmt.Fprintf(&b, "%s: %v\n", kv[0], kv[1])
	}
	return []byte(b.String()), nil
}

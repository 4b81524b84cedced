//go:build linux

package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// oomWatch learns whether the kernel's OOM killer acted in a container's cgroup. It must
// listen while the container runs: runc removes the cgroup as soon as the container ends,
// with its counters.
//
// On cgroup v1 an eventfd registered on memory.oom_control fires when the cgroup runs out
// of memory (and once more when it is removed, which the watcher tells apart by the
// cgroup being gone); as Docker does, an OOM event counts as the container being OOM
// killed. On v2, memory.events changes and its oom_kill counter says it.
type oomWatch struct {
	mu      sync.Mutex
	seen    bool
	files   []*os.File
	v2Event string
}

// watchOOM starts watching the cgroup at cgroupsPath, making it if runc has not yet (runc
// then uses it). It returns nil where it cannot watch.
func watchOOM(cgroupsPath string) *oomWatch {
	if cgroupsPath == "" {
		return nil
	}
	w := &oomWatch{}
	v1 := filepath.Join("/sys/fs/cgroup/memory", cgroupsPath)
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		if err := w.watchV1(v1); err != nil {
			w.stop()
			return nil
		}
		return w
	}
	if err := w.watchV2(filepath.Join("/sys/fs/cgroup", cgroupsPath)); err != nil {
		w.stop()
		return nil
	}
	return w
}

func (w *oomWatch) watchV1(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return err
	}
	event := os.NewFile(uintptr(efd), "eventfd")
	w.files = append(w.files, event)
	control, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return err
	}
	w.files = append(w.files, control)
	reg := fmt.Sprintf("%d %d", efd, control.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0o200); err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := event.Read(buf); err != nil {
				return
			}
			if _, err := os.Stat(dir); err != nil {
				return // the cgroup was removed: that is not an OOM
			}
			w.mu.Lock()
			w.seen = true
			w.mu.Unlock()
		}
	}()
	return nil
}

func (w *oomWatch) watchV2(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "inotify")
	w.files = append(w.files, f)
	w.v2Event = filepath.Join(dir, "memory.events")
	if _, err := unix.InotifyAddWatch(fd, w.v2Event, unix.IN_MODIFY); err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			w.checkV2()
		}
	}()
	return nil
}

func (w *oomWatch) checkV2() {
	b, err := os.ReadFile(w.v2Event)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			w.mu.Lock()
			w.seen = true
			w.mu.Unlock()
		}
	}
}

// killed tells whether the OOM killer acted.
func (w *oomWatch) killed() bool {
	if w == nil {
		return false
	}
	if w.v2Event != "" {
		w.checkV2()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

func (w *oomWatch) stop() {
	if w == nil {
		return
	}
	for _, f := range w.files {
		f.Close()
	}
}

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/engine/logs"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	rt "github.com/flyingdutchman/flyingdutchman/engine/runtime"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/engine/store"
	"github.com/flyingdutchman/flyingdutchman/images"
	"github.com/flyingdutchman/flyingdutchman/images/build"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// Config is what an engine needs to start.
type Config struct {
	// DataRoot holds everything the engine keeps: the database, blobs, snapshots,
	// containers' logs and runtime state.
	DataRoot string
	// InsecureRegistries may be reached over plain HTTP or unverified TLS, as well as
	// the loopback registries that always may.
	InsecureRegistries []string
	// MaxConcurrentDownloads limits the layers one pull downloads at once (0: default).
	MaxConcurrentDownloads int
	// StorageDriver is "overlay", "copy" or "" to choose.
	StorageDriver string
	// Logs caps each container's logs (zero values: the logs package's defaults).
	Logs logs.Options
	// Self is the dutchman binary, run as `dutchman shim` to monitor each container.
	Self string
	// Runc is the OCI runtime binary ("runc" from PATH if empty).
	Runc string
	// VMAgent is the vm runtime's guest agent binary (dutchman-agent beside Self if
	// empty), and VMKernel the kernel source fetched when a vm container needs a kernel
	// and none is the default (Debian's cloud kernel if empty).
	VMAgent, VMKernel string
	// VMRootfs is how vm guests get their root filesystem: "virtiofs" (default) or
	// "erofs" (see engine/runtime/vm).
	VMRootfs string
	// VMAccel is the vm runtime's accelerator: "auto" (default: KVM where a probe saw
	// the guest run on it, else TCG), "kvm" or "tcg".
	VMAccel string
	// Buildkitd is BuildKit's daemon, started for the first build (buildkitd beside Self,
	// then on PATH, if empty).
	Buildkitd string
	// Version is the daemon's version, reported by Info.
	Version string
	Logger  *slog.Logger
}

// Engine is a running engine on one data root.
type Engine struct {
	cfg      Config
	db       *store.DB
	images   *images.Store
	volumes  *volumes.Store
	networks *network.Manager
	runtimes map[string]rt.Runtime
	// kernels is the vm runtime's kernel cache (nil without the vm runtime).
	kernels *vm.Kernels
	// builds runs image builds through BuildKit; treeBuilds keeps the records of the
	// tree's build directories.
	builds     *build.Manager
	treeBuilds treeBuilds
	events     *events
	log        *slog.Logger

	// mu guards containers and names; each container guards itself.
	mu         sync.Mutex
	containers map[string]*container
	names      map[string]string // name -> ID

	// applying serialises Apply per container name.
	applying keyedMutex

	// volMu serialises the making and removing of volumes with volHolds, which counts
	// by name the creates in flight that will mount a volume.
	volMu    sync.Mutex
	volHolds map[string]int
	// portsMu guards published: the host ports the containers' runs publish, by
	// protocol and port, with the address and the container they belong to.
	portsMu   sync.Mutex
	published map[string]publishedPort

	// monitors counts the goroutines waiting for tasks to exit.
	monitors sync.WaitGroup
	// ctx ends when the engine closes; restarts scheduled by policies stop with it.
	ctx    context.Context
	cancel context.CancelFunc
}

var bucketContainers = []byte("containers")

// New opens the engine on cfg.DataRoot: it takes the data root's lock, opens the image
// store, and finds the containers an earlier run left, reattaching to those still
// running. It fails if another daemon holds the data root.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	db, err := store.Open(cfg.DataRoot)
	if err != nil {
		return nil, err
	}
	// The data root as the kernel names it (mountinfo does): what is mounted under it
	// is found by its path.
	if dir, err := filepath.EvalSymlinks(cfg.DataRoot); err == nil {
		cfg.DataRoot = dir
	}
	e := &Engine{cfg: cfg, db: db, log: cfg.Logger, containers: map[string]*container{}, names: map[string]string{}, volHolds: map[string]int{}, published: map[string]publishedPort{}}
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) (*Engine, error) {
		e.cancel()
		db.Close()
		return nil, err
	}
	e.images, err = images.Open(ctx, filepath.Join(cfg.DataRoot, "images"), db.DB,
		images.WithInsecureRegistries(cfg.InsecureRegistries...),
		images.WithMaxConcurrentDownloads(cfg.MaxConcurrentDownloads),
		images.WithDriver(cfg.StorageDriver),
		images.WithLogger(cfg.Logger))
	if err != nil {
		return fail(fmt.Errorf("image store: %w", err))
	}
	if e.volumes, err = volumes.Open(filepath.Join(cfg.DataRoot, "volumes"), db.DB); err != nil {
		e.images.Close()
		return fail(fmt.Errorf("volume store: %w", err))
	}
	if e.networks, err = network.Open(filepath.Join(cfg.DataRoot, "networks"), db.DB); err != nil {
		e.images.Close()
		return fail(fmt.Errorf("networks: %w", err))
	}
	e.builds = build.New(build.Config{
		Root: filepath.Join(cfg.DataRoot, "buildkit"), Binary: cfg.Buildkitd, Self: e.self(), Runc: cfg.Runc,
		InsecureRegistries: cfg.InsecureRegistries, Store: e.images, Logger: cfg.Logger,
	})
	e.unstageAll()
	if e.runtimes, err = e.newRuntimes(); err != nil {
		e.images.Close()
		return fail(err)
	}
	if e.events, err = newEvents(db.DB, filepath.Join(cfg.DataRoot, "events.jsonl")); err != nil {
		e.images.Close()
		return fail(fmt.Errorf("events: %w", err))
	}
	if err := e.restore(ctx); err != nil {
		e.images.Close()
		return fail(fmt.Errorf("restore containers: %w", err))
	}
	e.releaseIdleVolumes()
	e.probeVM()
	return e, nil
}

// Images is the image store.
func (e *Engine) Images() *images.Store { return e.images }

// Close stops the engine's own work (restart timers, monitors) and releases the data
// root. Containers keep running under their shims; the next engine reattaches to them.
func (e *Engine) Close() error {
	e.cancel()
	e.mu.Lock()
	for _, ct := range e.containers {
		ct.detach()
	}
	e.mu.Unlock()
	e.monitors.Wait()
	e.builds.Close()
	for _, r := range e.runtimes {
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	}
	e.events.close()
	e.networks.ReleaseIdleBridges()
	err := e.images.Close()
	if cerr := e.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Info describes the engine, for `dutchman info` and the tree's info file.
type Info struct {
	Version       string   `json:"version"`
	OS            string   `json:"os"`
	Arch          string   `json:"arch"`
	DataRoot      string   `json:"dataRoot"`
	StorageDriver string   `json:"storageDriver"`
	Runtimes      []string `json:"runtimes"`
	// DefaultRuntime is the runtime "auto" picks now: vm where its guests were seen to
	// run under KVM, else oci.
	DefaultRuntime string `json:"defaultRuntime"`
	// VM is what the vm runtime boots guests with (nil without the vm runtime).
	VM                 *vm.AccelInfo `json:"vm,omitempty"`
	InsecureRegistries []string      `json:"insecureRegistries"`
	// Builder is the buildkitd builds run through, and whether it runs.
	Builder           string `json:"builder"`
	Images            int    `json:"images"`
	Blobs             int    `json:"blobs"`
	Snapshots         int    `json:"snapshots"`
	Containers        int    `json:"containers"`
	ContainersRunning int    `json:"containersRunning"`
	ContainersPaused  int    `json:"containersPaused"`
	ContainersStopped int    `json:"containersStopped"`
}

// Info reports what the engine is and holds.
func (e *Engine) Info(ctx context.Context) (*Info, error) {
	u, err := e.images.Usage(ctx)
	if err != nil {
		return nil, err
	}
	insecure := e.cfg.InsecureRegistries
	if insecure == nil {
		insecure = []string{}
	}
	info := &Info{
		Version: e.cfg.Version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		DataRoot: e.cfg.DataRoot, StorageDriver: e.images.Driver(), InsecureRegistries: insecure,
		Images: u.Images, Blobs: u.Blobs, Snapshots: u.Snapshots, Builder: e.builds.Describe(),
	}
	for name := range e.runtimes {
		info.Runtimes = append(info.Runtimes, name)
	}
	info.DefaultRuntime = "oci"
	if info.VM = e.vmAccel(); info.VM != nil && info.VM.KVM {
		info.DefaultRuntime = "vm"
	}
	slices.Sort(info.Runtimes)
	for _, c := range e.List() {
		info.Containers++
		switch c.State {
		case Running, Restarting, Starting, Stopping:
			info.ContainersRunning++
		case Paused:
			info.ContainersPaused++
		default:
			info.ContainersStopped++
		}
	}
	return info, nil
}

// containerDir holds what the engine keeps of one container besides its record: logs.
func (e *Engine) containerDir(id string) string {
	return filepath.Join(e.cfg.DataRoot, "containers", id)
}

func (e *Engine) logDir(id string) string { return filepath.Join(e.containerDir(id), "logs") }

// persist writes a container's record.
func (e *Engine) persist(c *Container) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketContainers)
		if err != nil {
			return err
		}
		return b.Put([]byte(c.ID), data)
	})
}

func (e *Engine) unpersist(id string) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContainers)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
}

func (e *Engine) loadRecords() ([]*Container, error) {
	var out []*Container
	err := e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContainers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			c := new(Container)
			if err := json.Unmarshal(v, c); err != nil {
				return fmt.Errorf("container record %s: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// DB is the engine's metadata database, in which other packages (compose) keep buckets
// of their own.
func (e *Engine) DB() *bolt.DB { return e.db.DB }

// Log is the engine's logger.
func (e *Engine) Log() *slog.Logger { return e.log }

// Publish announces an event about something other than a container or an image (a
// compose project).
func (e *Engine) Publish(typ, action, name string, attrs map[string]string) {
	e.events.publish(Event{Type: typ, Action: action, Name: name, Attributes: attrs})
}

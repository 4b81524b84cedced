package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"

	"github.com/flyingdutchman/flyingdutchman/engine/store"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// Config is what an engine needs to start.
type Config struct {
	// DataRoot holds everything the engine keeps: the database, blobs, snapshots.
	DataRoot string
	// InsecureRegistries may be reached over plain HTTP or unverified TLS, as well as
	// the loopback registries that always may.
	InsecureRegistries []string
	// MaxConcurrentDownloads limits the layers one pull downloads at once (0: default).
	MaxConcurrentDownloads int
	// StorageDriver is "overlay", "copy" or "" to choose.
	StorageDriver string
	// Version is the daemon's version, reported by Info.
	Version string
	Logger  *slog.Logger
}

// Engine is a running engine on one data root.
type Engine struct {
	cfg    Config
	db     *store.DB
	images *images.Store
	log    *slog.Logger
}

// New opens the engine on cfg.DataRoot. It fails if another daemon holds the data root.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	db, err := store.Open(cfg.DataRoot)
	if err != nil {
		return nil, err
	}
	ims, err := images.Open(ctx, filepath.Join(cfg.DataRoot, "images"), db.DB,
		images.WithInsecureRegistries(cfg.InsecureRegistries...),
		images.WithMaxConcurrentDownloads(cfg.MaxConcurrentDownloads),
		images.WithDriver(cfg.StorageDriver),
		images.WithLogger(cfg.Logger))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("image store: %w", err)
	}
	return &Engine{cfg: cfg, db: db, images: ims, log: cfg.Logger}, nil
}

// Images is the image store.
func (e *Engine) Images() *images.Store { return e.images }

// Close flushes what the engine holds to disk and releases the data root.
func (e *Engine) Close() error {
	err := e.images.Close()
	if cerr := e.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Info describes the engine, for `dutchman info` and the tree's info file.
type Info struct {
	Version            string   `json:"version"`
	OS                 string   `json:"os"`
	Arch               string   `json:"arch"`
	DataRoot           string   `json:"dataRoot"`
	StorageDriver      string   `json:"storageDriver"`
	InsecureRegistries []string `json:"insecureRegistries"`
	Images             int      `json:"images"`
	Blobs              int      `json:"blobs"`
	Snapshots          int      `json:"snapshots"`
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
	return &Info{
		Version: e.cfg.Version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		DataRoot: e.cfg.DataRoot, StorageDriver: e.images.Driver(), InsecureRegistries: insecure,
		Images: u.Images, Blobs: u.Blobs, Snapshots: u.Snapshots,
	}, nil
}

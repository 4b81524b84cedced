package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
	"github.com/flyingdutchman/flyingdutchman/fs"
)

func newDaemonCommand() *cobra.Command {
	var (
		configFile string
		flags      daemonConfig
		mount      string
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the engine: the API on a unix socket and the tree",
		Long: `Run the engine. It serves the HTTP API on a unix socket, for the CLI and other clients,
and keeps its state in the data root. Settings come from the config file (JSON, keys as
the long flags: data-root, mount, socket, insecure-registries, max-concurrent-downloads,
storage-driver, log-level, vm-agent, vm-kernel, vm-rootfs, vm-accel, buildkitd), and flags
override it.

One daemon per data root: a second one on the same data root is refused.
SIGINT or SIGTERM stop it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := daemonConfig{}
			if err := loadConfigFile(configFile, cmd.Flags().Changed("config"), &cfg); err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("data-root") {
				cfg.DataRoot = flags.DataRoot
			}
			if fl.Changed("socket") {
				cfg.Socket = flags.Socket
			}
			if fl.Changed("mount") {
				cfg.Mount = &mount
			}
			if fl.Changed("insecure-registry") {
				cfg.InsecureRegistries = flags.InsecureRegistries
			}
			if fl.Changed("max-concurrent-downloads") {
				cfg.MaxConcurrentDownloads = flags.MaxConcurrentDownloads
			}
			if fl.Changed("storage-driver") {
				cfg.StorageDriver = flags.StorageDriver
			}
			if fl.Changed("log-level") {
				cfg.LogLevel = flags.LogLevel
			}
			if fl.Changed("vm-agent") {
				cfg.VMAgent = flags.VMAgent
			}
			if fl.Changed("vm-kernel") {
				cfg.VMKernel = flags.VMKernel
			}
			if fl.Changed("vm-rootfs") {
				cfg.VMRootfs = flags.VMRootfs
			}
			if fl.Changed("vm-accel") {
				cfg.VMAccel = flags.VMAccel
			}
			if fl.Changed("buildkitd") {
				cfg.Buildkitd = flags.Buildkitd
			}
			cfg.FuseDebug = flags.FuseDebug
			return runDaemon(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", defaultConfigFile(), "config file")
	f.StringVar(&flags.DataRoot, "data-root", defaultDataRoot(), "directory for the engine's state")
	f.StringVar(&flags.Socket, "socket", defaultSocket(), "unix socket of the API")
	f.StringVar(&mount, "mount", defaultMount(), `where to mount the tree ("" for none)`)
	f.StringSliceVar(&flags.InsecureRegistries, "insecure-registry", nil, "registry (host[:port]) reached over plain HTTP or unverified TLS; loopback registries always are")
	f.IntVar(&flags.MaxConcurrentDownloads, "max-concurrent-downloads", 3, "layers one pull downloads at once")
	f.StringVar(&flags.StorageDriver, "storage-driver", "", `container root filesystems: "overlay", "copy", or "" to choose`)
	f.StringVar(&flags.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&flags.VMAgent, "vm-agent", "", "the vm runtime's guest agent (default: dutchman-agent beside dutchman)")
	f.StringVar(&flags.VMKernel, "vm-kernel", "", `kernel fetched for the vm runtime when it has none: "debian:PACKAGE", a .deb file or an artifact reference (default "`+vm.DefaultKernelSource+`")`)
	f.StringVar(&flags.VMRootfs, "vm-rootfs", "virtiofs", `how vm guests get their root filesystem: "virtiofs" (shared with the host as it changes) or "erofs" (the image as a disk, faster to read; the host no longer sees what a container writes)`)
	f.StringVar(&flags.VMAccel, "vm-accel", "auto", `the vm runtime's accelerator: "auto" (KVM where a probe sees the guest run on it, else TCG), "kvm" (a host whose KVM cannot run the guest fails vm containers' start) or "tcg"`)
	f.StringVar(&flags.Buildkitd, "buildkitd", "", "BuildKit's daemon, started for the first build (default: buildkitd beside dutchman, then on PATH)")
	f.BoolVar(&flags.FuseDebug, "fuse-debug", false, "log every request the tree serves")
	f.MarkHidden("fuse-debug")
	return cmd
}

func runDaemon(ctx context.Context, cfg daemonConfig) error {
	if cfg.DataRoot == "" {
		cfg.DataRoot = defaultDataRoot()
	}
	if cfg.Socket == "" {
		cfg.Socket = defaultSocket()
	}
	if cfg.Mount == nil {
		m := defaultMount()
		cfg.Mount = &m
	}
	// Paths are kept absolute: runc and the shim run elsewhere than the daemon, and the
	// runtime spec refuses a relative root.
	for _, p := range []*string{&cfg.DataRoot, &cfg.Socket, cfg.Mount, &cfg.VMAgent, &cfg.Buildkitd} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(orDefault(cfg.LogLevel, "info"))); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	eng, err := engine.New(ctx, engine.Config{
		DataRoot:               cfg.DataRoot,
		InsecureRegistries:     cfg.InsecureRegistries,
		MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
		StorageDriver:          cfg.StorageDriver,
		VMAgent:                cfg.VMAgent,
		VMKernel:               cfg.VMKernel,
		VMRootfs:               cfg.VMRootfs,
		VMAccel:                cfg.VMAccel,
		Buildkitd:              cfg.Buildkitd,
		Version:                version,
		Logger:                 log,
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	projects, err := compose.NewManager(eng)
	if err != nil {
		return err
	}
	defer projects.Close()

	// The tree is mounted before the API answers: a client that reaches the API finds
	// it there.
	if *cfg.Mount != "" {
		tree, err := fs.New(ctx, fs.Options{Mountpoint: *cfg.Mount, Engine: eng, Projects: projects, Log: log, Debug: cfg.FuseDebug})
		if err != nil {
			return err
		}
		defer func() {
			if err := tree.Unmount(); err != nil {
				log.Error("unmount the tree", "mount", tree.Dir(), "err", err)
			}
		}()
		log.Info("tree mounted", "mount", tree.Dir())
	}
	l, err := api.Listen(cfg.Socket)
	if err != nil {
		return fmt.Errorf("api socket: %w", err)
	}
	defer os.Remove(cfg.Socket)
	info, _ := eng.Info(ctx)
	log.Info("dutchman daemon started", "version", version, "pid", os.Getpid(), "data-root", cfg.DataRoot,
		"socket", cfg.Socket, "storage-driver", info.StorageDriver, "insecure-registries", strings.Join(cfg.InsecureRegistries, ","))

	err = api.NewServer(eng, projects, version, log).Serve(ctx, l, 10*time.Second)
	log.Info("dutchman daemon stopped")
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

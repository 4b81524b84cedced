// Command dutchman is FlyingDutchman's one binary: the daemon (`dutchman daemon`) and the
// CLI, whose subcommands are clients of the daemon's API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
)

// version is set at build time (make sets it from git describe).
var version = "dev"

// cli is what every client subcommand shares: where the daemon is, and what to do with
// SIGINT and SIGTERM (cancel the command, or pass them on to a container).
type cli struct {
	host   string
	signal atomic.Pointer[func(os.Signal)]
}

// proxy sends SIGINT and SIGTERM to fn instead of cancelling the command (nil: cancel).
func (c *cli) proxy(fn func(os.Signal)) {
	if fn == nil {
		c.signal.Store(nil)
		return
	}
	c.signal.Store(&fn)
}

func (c *cli) client() (*api.Client, error) {
	return api.NewClient(c.host)
}

func newRootCommand(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:   "dutchman",
		Short: "FlyingDutchman: a container engine whose primary interface is a filesystem",
		Long: `FlyingDutchman runs containers from OCI images. Its daemon (dutchman daemon) serves an HTTP
API on a unix socket; these subcommands are clients of it, found through --host or
DUTCHMAN_HOST (unix:///path/to/socket).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags of a parent command before its subcommand (compose -f FILE up).
		TraverseChildren: true,
		Version:          version,
	}
	host := os.Getenv("DUTCHMAN_HOST")
	if host == "" {
		host = defaultHost()
	}
	root.PersistentFlags().StringVarP(&c.host, "host", "H", host, "daemon socket (env DUTCHMAN_HOST)")
	root.AddCommand(
		newDaemonCommand(),
		newVersionCommand(c),
		newInfoCommand(c),
		newPullCommand(c),
		newImagesCommand(c),
		newRmiCommand(c),
		newTagCommand(c),
		newPushCommand(c),
		newSaveCommand(c),
		newLoadCommand(c),
		newBuildCommand(c),
		newImageCommand(c),
		newVolumeCommand(c),
		newNetworkCommand(c),
		newKernelCommand(c),
		newComposeCommand(c),
		newPortCommand(c),
		newRunCommand(c),
		newCreateCommand(c),
		newStartCommand(c),
		newStopCommand(c, false),
		newStopCommand(c, true),
		newKillCommand(c),
		newPauseCommand(c, true),
		newPauseCommand(c, false),
		newRmCommand(c),
		newRenameCommand(c),
		newWaitCommand(c),
		newPsCommand(c),
		newLogsCommand(c),
		newExecCommand(c),
		newAttachCommand(c),
		newInspectCommand(c),
		newEventsCommand(c),
		newShimCommand(),
		newVMShareCommand(),
		newBuildkitdExecCommand(),
	)
	return root
}

func main() {
	c := &cli{}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for sig := range sigs {
			if fn := c.signal.Load(); fn != nil {
				(*fn)(sig)
			} else {
				cancel()
			}
		}
	}()
	err := newRootCommand(c).ExecuteContext(ctx)
	cancel()
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || !ee.silent {
			fmt.Fprintln(os.Stderr, "dutchman:", err)
		}
		if ee != nil {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError ends the program with a given status; silent ones print nothing (a
// container's own exit code).
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

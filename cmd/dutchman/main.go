// Command dutchman is FlyingDutchman's one binary: the daemon (`dutchman daemon`) and the
// CLI, whose subcommands are clients of the daemon's API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flyingdutchman/flyingdutchman/api"
)

// version is set at build time (make sets it from git describe).
var version = "dev"

// cli is what every client subcommand shares: where the daemon is, and the streams.
type cli struct {
	host string
}

func (c *cli) client() (*api.Client, error) {
	return api.NewClient(c.host)
}

func newRootCommand() *cobra.Command {
	c := &cli{}
	root := &cobra.Command{
		Use:   "dutchman",
		Short: "FlyingDutchman: a container engine whose primary interface is a filesystem",
		Long: `FlyingDutchman runs containers from OCI images. Its daemon (dutchman daemon) serves an HTTP
API on a unix socket; these subcommands are clients of it, found through --host or
DUTCHMAN_HOST (unix:///path/to/socket).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
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
		newImageCommand(c),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dutchman:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError ends the program with a given status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

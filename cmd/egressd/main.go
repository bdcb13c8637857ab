// Command egressd learns each Kubernetes app's external destinations from
// Cilium Hubble flows, keeps them in PostgreSQL and exports them as baseline
// files for a GitOps repository. Run `egressd help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Signals stay here, out of CLI and Main, so tests run the real program
	// in-process and stop it by cancelling its context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cli := &CLI{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	os.Exit(cli.Run(ctx, os.Args[1:]))
}

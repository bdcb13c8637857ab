package main

import (
	"context"
	"flag"
	"fmt"
)

func (c *CLI) migrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd migrate", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "database schema at version %d\n", v)
	return nil
}

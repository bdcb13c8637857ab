package main

import (
	"context"
	"errors"
)

func (c *CLI) demo(ctx context.Context, args []string) error {
	return errors.New("demo: not built yet")
}

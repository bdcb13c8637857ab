package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/oklog/run"
)

// Group runs components together and stops them one after the other, in
// the order they were added. It is oklog/run's Group (as Prometheus'
// cmd/prometheus/main.go uses it) with one addition: a component is told to
// stop only once the one added before it has returned, so that what a
// component still does while stopping (a last flush, a last alert round)
// is done before the next one stops.
type Group struct {
	log   *slog.Logger
	comps []component
}

type component struct {
	name string
	run  func(ctx context.Context) error
}

// NewGroup returns an empty Group that logs, at Info, when it starts
// stopping and as each component returns. A nil logger discards.
func NewGroup(log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{log: log}
}

// Add appends a component. run must return once its context is cancelled,
// nil when it stopped normally; it may return earlier, which stops the
// whole group.
func (g *Group) Add(name string, run func(ctx context.Context) error) {
	g.comps = append(g.comps, component{name: name, run: run})
}

// Run runs every component until ctx is cancelled or one of them returns,
// then stops them in the order they were added, each once the one before
// it has returned. It returns when all have, with the errors they
// returned, each prefixed by its component's name.
func (g *Group) Run(ctx context.Context) error {
	var rg run.Group
	// The caller's ctx ending stops the group as a component returning
	// does.
	parent, cancelParent := context.WithCancel(ctx)
	defer cancelParent()
	var cause sync.Once
	stopping := func(why string) {
		cause.Do(func() { g.log.Info("service_stopping", "cause", why) })
	}
	rg.Add(func() error {
		<-parent.Done()
		if ctx.Err() != nil {
			stopping("context cancelled")
		}
		return nil
	}, func(error) { cancelParent() })

	errs := make([]error, len(g.comps))
	for i, c := range g.comps {
		// Components outlive ctx: each stops when its turn comes.
		cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		rg.Add(func() error {
			defer close(done)
			err := c.run(cctx)
			if cctx.Err() == nil {
				// Returned before its turn: it stops the group.
				stopping(c.name)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.name, err)
			}
			g.log.Info("component_stopped", "component", c.name, "failed", err != nil)
			return err
		}, func(error) {
			// oklog/run calls the interrupts one after the other, in
			// the order of Add: waiting here for the component to
			// return holds the next one back until then.
			stop()
			<-done
		})
	}
	rg.Run()
	return errors.Join(errs...)
}

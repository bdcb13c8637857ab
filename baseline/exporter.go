package baseline

import (
	"fmt"
	"os"

	"github.com/egressd/egressd"
)

// exportBatch is how many apps an Exporter plans and writes at a time:
// enough for each batch to keep every CPU busy, few enough that the first
// files are written while the window is still being read.
const exportBatch = 512

// Exporter is Export fed one app's baseline at a time, as the window
// streams from the database (postgres.DB.EachWindowApp): it writes the
// files of the apps added so far, in batches on a goroutine of its own,
// while the caller reads the next apps. The files, errors and result are
// Export's for the same apps, except that an app added twice is reported
// and its second baseline ignored (the first may be written already).
// Close finishes the export and must be called; an Exporter is used from
// one goroutine.
type Exporter struct {
	dir   string
	opts  ExportOptions
	root  *os.Root
	live  map[egressd.App]bool
	batch []egressd.Baseline
	work  chan []egressd.Baseline
	done  chan struct{}
	out   outcome // the worker's until done is closed
	errs  []error // Add's
}

// NewExporter starts an export into dir, which it creates when it does not
// exist.
func NewExporter(dir string, opts ExportOptions) (*Exporter, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create baseline directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open baseline directory: %w", err)
	}
	x := &Exporter{dir: dir, opts: opts, root: root, live: map[egressd.App]bool{},
		work: make(chan []egressd.Baseline, 1), done: make(chan struct{})}
	go func() {
		defer close(x.done)
		missingNS := map[string]bool{}
		for batch := range x.work {
			steps, errs := planIn(x.root, x.dir, batch, ExportOptions{}, missingNS)
			x.out.errs = append(x.out.errs, errs...)
			x.out.apply(x.root, steps, writeSteps(x.root, steps, x.opts.Sync))
		}
	}()
	return x, nil
}

// Add queues b's file, written once a batch of apps is complete.
func (x *Exporter) Add(b egressd.Baseline) {
	app := egressd.App{Namespace: b.Namespace, Name: b.App}
	if x.live[app] {
		x.errs = append(x.errs, egressd.Errorf(egressd.EINVALID, "%s: app %s added twice to the export (the second baseline is ignored)", x.dir, app))
		return
	}
	x.live[app] = true
	x.batch = append(x.batch, b)
	if len(x.batch) >= exportBatch {
		x.work <- x.batch
		x.batch = nil
	}
}

// Close writes the apps still queued, prunes under ExportOptions.Prune the
// files of apps never added, and returns what Export returns.
func (x *Exporter) Close() (ExportResult, error) {
	if len(x.batch) > 0 {
		x.work <- x.batch
		x.batch = nil
	}
	close(x.work)
	<-x.done
	defer x.root.Close()
	o := &x.out
	o.errs = append(x.errs, o.errs...)
	if x.opts.Prune {
		steps, errs := planPrune(x.root, x.dir, func(a egressd.App) bool { return x.live[a] })
		o.errs = append(o.errs, errs...)
		o.apply(x.root, steps, make([]error, len(steps)))
	}
	return o.result(x.root, x.dir)
}

// Abandon stops the export when the live set cannot be read to its end:
// the apps still queued are not written and nothing is pruned (apps not yet
// added are not absent). Files already written stay: each held an app's
// whole baseline.
func (x *Exporter) Abandon() {
	x.batch = nil
	close(x.work)
	<-x.done
	x.root.Close()
}

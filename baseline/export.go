package baseline

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/egressd/egressd"
)

// File and directory modes of exported files, whatever the umask: the files
// are meant to be read by git, CI and other users of the checkout.
const (
	fileMode = 0o644
	dirMode  = 0o755
)

// ExportOptions tune Export and Diff. The zero value is the default.
type ExportOptions struct {
	// Prune deletes the files of apps that are absent from the live set.
	// By default they stay: an app that had no traffic within the window
	// (a monthly job, a scaled-down deployment) keeps its baseline.
	Prune bool
	// Sync flushes each written file and its directory to stable storage
	// before reporting it written. Without it a crash just after an export
	// may lose the newest files on some file systems, but never leaves a
	// half-written one (the rename is atomic); the files live in git, so
	// the next export writes them again. Sync costs an fsync per file.
	Sync bool
}

// ExportResult lists the files Export handled, each as Path returns it and
// sorted.
type ExportResult struct {
	// Written are the files created or replaced because their bytes
	// changed.
	Written []string
	// Unchanged are the files of live apps that already held the bytes
	// Export would write; they were not touched.
	Unchanged []string
	// Pruned are the files deleted under ExportOptions.Prune.
	Pruned []string
}

// Export writes the baseline of every live app to dir/<namespace>/<app>.json,
// merged with the file already there (see Merge), and creates dir when it
// does not exist. A file is written only if its bytes change, atomically: the
// new content goes to a temporary file in the same directory, which is then
// renamed over the old one, so a reader sees the old file or the new one,
// never a mix. Files get mode 0644, directories 0755.
//
// Errors do not stop the export: an app whose file cannot be read or parsed,
// or whose live baseline is invalid, is reported (the error names the file)
// and its file is left untouched, and the other apps are still written. The
// errors are joined with errors.Join, and the result lists what was done.
func Export(dir string, live []egressd.Baseline, opts ExportOptions) (ExportResult, error) {
	var res ExportResult
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return res, fmt.Errorf("create baseline directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return res, fmt.Errorf("open baseline directory: %w", err)
	}
	defer root.Close()

	steps, errs := plan(root, dir, live, opts)
	o := outcome{errs: errs}
	o.apply(root, steps, writeSteps(root, steps, opts.Sync))
	return o.result(root, dir)
}

// outcome gathers what an export did, file by file.
type outcome struct {
	written, unchanged, pruned []doneFile
	emptied                    map[string]bool // namespaces pruning took files from
	errs                       []error
}

type doneFile struct {
	app  egressd.App
	path string
}

// apply removes the files of the prune steps and records every step's
// outcome; failed holds the steps' write errors by index (writeSteps).
func (o *outcome) apply(root *os.Root, steps []step, failed []error) {
	for i, s := range steps {
		done := doneFile{s.app, s.path}
		switch {
		case s.prune:
			if err := root.Remove(s.rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				o.errs = append(o.errs, fmt.Errorf("prune baseline %s: %w", s.path, err))
				continue
			}
			o.pruned = append(o.pruned, done)
			if o.emptied == nil {
				o.emptied = map[string]bool{}
			}
			o.emptied[s.app.Namespace] = true
		case s.unchanged():
			o.unchanged = append(o.unchanged, done)
		case failed[i] != nil:
			o.errs = append(o.errs, fmt.Errorf("write baseline %s: %w", s.path, failed[i]))
		default:
			o.written = append(o.written, done)
		}
	}
}

// result removes the namespace directories pruning emptied and returns the
// export's result, each list sorted by namespace and app, and its errors
// joined.
func (o *outcome) result(root *os.Root, dir string) (ExportResult, error) {
	// A namespace directory that pruning emptied goes too: git does not
	// track empty directories, so keeping it would only differ from a
	// fresh checkout.
	for _, ns := range slices.Sorted(maps.Keys(o.emptied)) {
		if entries, err := fs.ReadDir(root.FS(), ns); err == nil && len(entries) == 0 {
			if err := root.Remove(ns); err != nil {
				o.errs = append(o.errs, fmt.Errorf("remove empty baseline directory %s: %w", filepath.Join(dir, ns), err))
			}
		}
	}
	paths := func(files []doneFile) []string {
		slices.SortFunc(files, func(a, b doneFile) int { return compareApps(a.app, b.app) })
		var out []string
		for _, f := range files {
			out = append(out, f.path)
		}
		return out
	}
	return ExportResult{Written: paths(o.written), Unchanged: paths(o.unchanged), Pruned: paths(o.pruned)}, errors.Join(o.errs...)
}

// writeSteps writes the files of the steps that change one, and returns
// each step's error by index. Namespaces are written in parallel, each
// through one Root open while its files are written: os.Root resolves every
// path component with its own system calls, and the writes of an export are
// many files in few directories.
func writeSteps(root *os.Root, steps []step, durable bool) []error {
	failed := make([]error, len(steps))
	chmod := umaskMasks(fileMode)
	// Steps are sorted by namespace: each group is one namespace's steps
	// that write.
	var groups [][2]int
	for i := 0; i < len(steps); {
		j := i + 1
		for j < len(steps) && steps[j].app.Namespace == steps[i].app.Namespace {
			j++
		}
		groups = append(groups, [2]int{i, j})
		i = j
	}
	parallel(len(groups), func(g int) {
		var ns *os.Root
		for i := groups[g][0]; i < groups[g][1]; i++ {
			s := &steps[i]
			if s.prune || s.unchanged() {
				continue
			}
			if ns == nil {
				var err error
				if ns, err = openNamespace(root, s.app.Namespace); err != nil {
					for ; i < groups[g][1]; i++ {
						if s := &steps[i]; !s.prune && !s.unchanged() {
							failed[i] = err
						}
					}
					return
				}
				defer ns.Close()
			}
			failed[i] = writeFileMode(ns, s.app.Name+".json", s.data, durable, chmod)
		}
	})
	return failed
}

// parallel calls fn(0) to fn(n-1), on as many goroutines as the process
// may run at once, and returns when every call has.
func parallel(n int, fn func(i int)) {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// step is what Export does with one file.
type step struct {
	app     egressd.App
	rel     string            // namespace/app.json, relative to the root
	path    string            // as Path returns it
	exists  bool              // the file exists
	oldData []byte            // its content
	old     *egressd.Baseline // its content parsed; nil when unchanged
	next    egressd.Baseline  // what to write; zero when unchanged
	data    []byte            // next, marshalled; nil when pruning
	prune   bool
}

// unchanged reports whether the step leaves the file as it is.
func (s *step) unchanged() bool {
	return !s.prune && s.exists && bytes.Equal(s.oldData, s.data)
}

// plain reports whether b has none of what only a person writes: the
// unbounded flag, notes, patterns.
func plain(b egressd.Baseline) bool {
	if b.Unbounded || b.Note != "" {
		return false
	}
	for _, d := range b.Destinations {
		if d.Note != "" || isPattern(d.Name) {
			return false
		}
	}
	return true
}

// plan decides, without writing anything, what Export does: one step per
// valid live app, then with opts.Prune one per file of an absent app. root
// is nil when dir does not exist. Steps come sorted by namespace and app.
func plan(root *os.Root, dir string, live []egressd.Baseline, opts ExportOptions) ([]step, []error) {
	return planIn(root, dir, live, opts, map[string]bool{})
}

// planIn is plan; missingNS says, of each namespace looked at, whether its
// directory was absent at first sight, and is filled as plan looks. Only
// this export can have written files there since, so an Exporter keeps it
// from batch to batch: its apps come once each.
func planIn(root *os.Root, dir string, live []egressd.Baseline, opts ExportOptions, missingNS map[string]bool) ([]step, []error) {
	var errs []error
	count := make(map[egressd.App]int, len(live))
	for _, b := range live {
		count[egressd.App{Namespace: b.Namespace, Name: b.App}]++
	}
	// What needs no file: duplicates and the namespace directories that do
	// not exist (one look spares a failed open per app, on a first export).
	// The rest is planned in parallel (planApp).
	todo := make([]int, 0, len(live))
	rels := make([]string, len(live))
	for i, b := range live {
		app := egressd.App{Namespace: b.Namespace, Name: b.App}
		rel, err := relPath(app.Namespace, app.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("live baseline: %w", err))
			continue
		}
		switch n := count[app]; {
		case n < 0: // already reported
			continue
		case n > 1:
			count[app] = -1
			errs = append(errs, egressd.Errorf(egressd.EINVALID, "%s: app %s appears %d times in the live set (file left untouched)", filepath.Join(dir, rel), app, n))
			continue
		}
		if _, seen := missingNS[app.Namespace]; !seen && root != nil {
			_, err := root.Lstat(app.Namespace)
			missingNS[app.Namespace] = errors.Is(err, fs.ErrNotExist)
		}
		rels[i] = rel
		todo = append(todo, i)
	}
	planned := make([]plannedStep, len(todo))
	parallel(len(todo), func(k int) {
		i := todo[k]
		planned[k] = planApp(root, dir, live[i], rels[i], root == nil || missingNS[live[i].Namespace])
	})
	steps := make([]step, 0, len(live))
	for _, p := range planned {
		if p.err != nil {
			errs = append(errs, p.err)
			continue
		}
		steps = append(steps, p.step)
	}

	if opts.Prune && root != nil {
		pruned, pruneErrs := planPrune(root, dir, func(a egressd.App) bool { return count[a] != 0 })
		steps, errs = append(steps, pruned...), append(errs, pruneErrs...)
	}
	slices.SortFunc(steps, func(a, b step) int { return compareApps(a.app, b.app) })
	return steps, errs
}

// planPrune returns a step for each baseline file in root of an app that
// live says is not live.
func planPrune(root *os.Root, dir string, live func(egressd.App) bool) ([]step, []error) {
	var steps []step
	files, errs := listFiles(root, dir)
	for _, f := range files {
		if live(f.app) {
			continue
		}
		// Prune only what is recognisably a baseline: a broken
		// file might be someone's work in progress.
		old, oldData, err := readExisting(root, dir, f.app)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w (not pruned)", err))
			continue
		}
		if old == nil {
			continue // gone since listed
		}
		rel := appRel(f.app)
		steps = append(steps, step{app: f.app, rel: rel, path: filepath.Join(dir, rel), exists: true, old: old, oldData: oldData, prune: true})
	}
	return steps, errs
}

// plannedStep is planApp's result: a step, or the error that leaves the
// app's file untouched.
type plannedStep struct {
	step step
	err  error
}

// planApp plans the file of one live app at rel (valid, and the app's only
// baseline in the live set); absent says that its namespace directory does
// not exist. It only reads, so apps are planned in parallel.
func planApp(root *os.Root, dir string, b egressd.Baseline, rel string, absent bool) plannedStep {
	app := egressd.App{Namespace: b.Namespace, Name: b.App}
	path := filepath.Join(dir, rel)
	var (
		oldData []byte
		exists  bool
		err     error
	)
	if !absent {
		oldData, exists, err = readData(root, dir, app)
	}
	if err != nil {
		return plannedStep{err: fmt.Errorf("%w (file left untouched)", err)}
	}
	// The common case, exporting over the previous export of an app
	// without hand edits, needs no parsing: when the file holds the bytes
	// of the live baseline, it has no unbounded flag, notes or patterns,
	// so merging would keep exactly the live set.
	if exists && plain(b) {
		// Suggestions are the export's own: what the caller set is
		// replaced by what the listed names suggest (Merge leaves them
		// out, and they are computed again below).
		b.Suggestions = Suggest(b.Destinations)
		if data, err := Marshal(b); err == nil && bytes.Equal(data, oldData) {
			return plannedStep{step: step{app: app, rel: rel, path: path, exists: true, oldData: oldData, data: data}}
		}
	}
	var old *egressd.Baseline
	if exists {
		parsed, err := unmarshal(oldData, path, &app)
		if err != nil {
			return plannedStep{err: fmt.Errorf("%w (file left untouched)", err)}
		}
		old = &parsed
	}
	next := Merge(old, b)
	next.Suggestions = Suggest(next.Destinations)
	data, err := Marshal(next)
	if err != nil {
		return plannedStep{err: fmt.Errorf("%s: %w (file left untouched)", path, err)}
	}
	return plannedStep{step: step{app: app, rel: rel, path: path, exists: exists, old: old, oldData: oldData, next: next, data: data}}
}

// compareApps orders apps by namespace, then name.
func compareApps(a, b egressd.App) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// openNamespace opens, creating it if need be, a namespace directory.
func openNamespace(root *os.Root, namespace string) (*os.Root, error) {
	switch err := root.Mkdir(namespace, dirMode); {
	case err == nil:
		if err := root.Chmod(namespace, dirMode); err != nil { // undo the umask
			return nil, err
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, err
	}
	return root.OpenRoot(namespace)
}

// writeFile replaces the file name in dir with data atomically: a temporary
// file in the same directory, renamed over name once complete.
func writeFile(dir *os.Root, name string, data []byte, sync bool) error {
	return writeFileMode(dir, name, data, sync, true)
}

// writeFileMode is writeFile; chmod false skips setting the file's mode,
// for callers that know the umask leaves fileMode whole (umaskMasks).
func writeFileMode(dir *os.Root, name string, data []byte, sync, chmod bool) error {
	// The temporary name is short (an app name may use up to 250 of the
	// 255 bytes a file name may have), hidden, and does not end in .json,
	// so LoadDir skips it.
	var (
		tmp string
		f   *os.File
		err error
	)
	for range 10 {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
		tmp = ".egressd-" + hex.EncodeToString(rnd[:]) + ".tmp"
		f, err = dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = dir.Remove(tmp) // best effort; the error that got us here matters more
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if chmod {
		if err := f.Chmod(fileMode); err != nil { // undo the umask
			return err
		}
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := dir.Rename(tmp, name); err != nil {
		return err
	}
	committed = true
	if sync {
		// The rename is durable once the directory is.
		d, err := dir.Open(".")
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}

// umaskMasks reports whether the process's umask may clear bits of mode,
// as read from /proc/self/status (Linux); true when it cannot tell. An
// export of 10k files spares 10k chmod calls under the usual umask 022.
func umaskMasks(mode os.FileMode) bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			umask, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err != nil || os.FileMode(umask)&mode.Perm() != 0
		}
	}
	return true
}

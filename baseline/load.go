package baseline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd"
)

// LoadDir reads every baseline file under dir, laid out as
// dir/<namespace>/<app>.json, and returns the baselines sorted by namespace
// then app. Hidden files and directories (.git, editors' and Export's
// temporary files), files not ending in ".json", files directly in dir
// (renovate.json, say), deeper directories and symbolic links to directories
// are ignored.
//
// It reads everything it can: each file that cannot be loaded (invalid JSON
// or content, a name that is not a valid <namespace>/<app>.json, a file whose
// namespace or app disagrees with its path) adds an error naming the file,
// and the result holds the others. The errors are joined with errors.Join.
func LoadDir(dir string) ([]egressd.Baseline, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open baseline directory: %w", err)
	}
	defer root.Close()
	files, errs := listFiles(root, dir)
	out := make([]egressd.Baseline, 0, len(files))
	for _, f := range files {
		b, _, err := readExisting(root, dir, f.app)
		switch {
		case err != nil:
			errs = append(errs, err)
		case b != nil: // nil: removed since listed
			out = append(out, *b)
		}
	}
	sortBaselines(out)
	return out, errors.Join(errs...)
}

// appFile is a file that, by its path, holds an app's baseline.
type appFile struct {
	app egressd.App
}

// listFiles lists the baseline files in root in path order.
func listFiles(root *os.Root, dir string) ([]appFile, []error) {
	fsys := root.FS()
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, []error{fmt.Errorf("read baseline directory %s: %w", dir, err)}
	}
	var (
		files []appFile
		errs  []error
	)
	for _, ns := range top {
		if hidden(ns.Name()) || !ns.IsDir() {
			continue
		}
		entries, err := fs.ReadDir(fsys, ns.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("read baseline directory %s: %w", filepath.Join(dir, ns.Name()), err))
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if hidden(name) || e.IsDir() || !strings.HasSuffix(name, ".json") {
				continue
			}
			app := egressd.App{Namespace: ns.Name(), Name: strings.TrimSuffix(name, ".json")}
			if err := app.Validate(); err != nil {
				errs = append(errs, egressd.Errorf(egressd.EINVALID, "%s: not a baseline file name: want <namespace>/<app>.json: %s",
					filepath.Join(dir, ns.Name(), name), egressd.ErrorMessage(err)))
				continue
			}
			files = append(files, appFile{app: app})
		}
	}
	return files, errs
}

func hidden(name string) bool {
	return strings.HasPrefix(name, ".")
}

// readExisting reads and parses an app's file. It returns nil and no error
// when there is none.
func readExisting(root *os.Root, dir string, app egressd.App) (*egressd.Baseline, []byte, error) {
	data, exists, err := readData(root, dir, app)
	if err != nil || !exists {
		return nil, nil, err
	}
	b, err := unmarshal(data, filepath.Join(dir, appRel(app)), &app)
	if err != nil {
		return nil, data, err
	}
	return &b, data, nil
}

// readData reads an app's file; exists is false when there is none.
func readData(root *os.Root, dir string, app egressd.App) (data []byte, exists bool, err error) {
	if root == nil {
		return nil, false, nil
	}
	rel := appRel(app)
	data, err = root.ReadFile(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read baseline %s: %w", filepath.Join(dir, rel), err)
	}
	return data, true, nil
}

// appRel is the file of a valid app, relative to the directory.
func appRel(app egressd.App) string {
	return filepath.Join(app.Namespace, app.Name+".json")
}

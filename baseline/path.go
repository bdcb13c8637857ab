package baseline

import (
	"path/filepath"

	"github.com/egressd/egressd"
)

// Path returns the file of an app's baseline: dir/<namespace>/<app>.json. It
// accepts only valid names (egressd.App.Validate): a namespace is a DNS label
// and an app name never contains a path separator or starts with a dot, so the
// result is always a file two levels inside dir, whatever a flow said.
func Path(dir, namespace, app string) (string, error) {
	rel, err := relPath(namespace, app)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, rel), nil
}

// relPath returns "<namespace>/<app>.json" in the operating system's form.
func relPath(namespace, app string) (string, error) {
	if err := (egressd.App{Namespace: namespace, Name: app}).Validate(); err != nil {
		return "", err
	}
	return filepath.Join(namespace, app+".json"), nil
}

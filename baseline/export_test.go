package baseline

import (
	"bytes"
	"encoding/json"

	"github.com/egressd/egressd"
)

// UnmarshalStrict exposes the strict decoder to the tests, which check that
// Unmarshal's fast path for canonical files agrees with it.
func UnmarshalStrict(data []byte, source string) (egressd.Baseline, error) {
	return unmarshalStrict(data, source, nil)
}

// MarshalStd is Marshal written with encoding/json, the reference the tests
// hold Marshal's hand-written encoder to.
func MarshalStd(b egressd.Baseline) ([]byte, error) {
	nb, err := normalize(b)
	if err != nil {
		return nil, err
	}
	f := file{
		APIVersion:   egressd.BaselineAPIVersion,
		Kind:         egressd.BaselineKind,
		Namespace:    nb.Namespace,
		App:          nb.App,
		Unbounded:    nb.Unbounded,
		Note:         nb.Note,
		Pods:         toFilePods(nb.Pods),
		Destinations: make([]fileDestination, len(nb.Destinations)),
		Suggestions:  toFileSuggestions(nb.Suggestions),
	}
	for i, d := range nb.Destinations {
		ports := make([]string, len(d.Ports))
		for j, p := range d.Ports {
			ports[j] = p.String()
		}
		f.Destinations[i] = fileDestination{Name: d.Name, Ports: ports, Note: d.Note}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

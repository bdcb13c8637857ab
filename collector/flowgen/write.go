package flowgen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/cilium/cilium/api/v1/observer"
)

// WriteJSONLines writes the responses as `hubble observe -o jsonpb` prints
// them: one GetFlowsResponse per line, proto3 JSON with proto field names
// ({"flow":{...},"node_name":"...","time":"..."}), compact, newline-ended.
// Like hubble, it goes through encoding/json, which compacts the protojson
// output; that also removes the whitespace protojson varies from build to
// build, so the same responses always give the same bytes.
func WriteJSONLines(w io.Writer, resps []*observer.GetFlowsResponse) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i, r := range resps {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write response %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write responses: %w", err)
	}
	return nil
}

// WriteLegacyLines writes the responses as `hubble observe -o json` (the
// legacy format) prints them: a bare Flow object per line, and a bare
// LostEvent object for lost events. Node status responses are left out, as
// hubble prints them only on standard error.
func WriteLegacyLines(w io.Writer, resps []*observer.GetFlowsResponse) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i, r := range resps {
		var err error
		switch {
		case r.GetFlow() != nil:
			err = enc.Encode(r.GetFlow())
		case r.GetLostEvents() != nil:
			err = enc.Encode(r.GetLostEvents())
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("write response %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write responses: %w", err)
	}
	return nil
}

package collector

import "github.com/prometheus/client_golang/prometheus"

// FlowDecoder is the pipeline's selective decoder on its own. egressd bench
// times it against a full proto.Unmarshal of the same messages.
type FlowDecoder struct {
	d *decoder
	r decodedResponse
}

// NewFlowDecoder returns the decoder a pipeline with opts would use.
func NewFlowDecoder(opts Options) (*FlowDecoder, error) {
	p, err := NewPipeline(opts, NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return nil, err
	}
	return &FlowDecoder{d: p.dec}, nil
}

// Decode reads every field of one encoded GetFlowsResponse that attribution
// may use, the source and destination endpoints included.
func (d *FlowDecoder) Decode(msg []byte) error {
	if err := d.d.decode(msg, &d.r); err != nil {
		return err
	}
	return d.d.endpoints(&d.r.flow)
}

package hubbletest

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	// Registers the "proto" codec that serverCodec delegates to.
	_ "google.golang.org/grpc/encoding/proto"
)

// preEncoded is a GetFlowsResponse already in protobuf wire form. Add
// encodes each response once, so that serving it to many streams, or to a
// load benchmark, costs no marshaling.
type preEncoded struct{ wire []byte }

// serverCodec is gRPC's proto codec, except that it sends a *preEncoded as
// is. It is installed with grpc.ForceServerCodecV2 under the name "proto", so
// clients see ordinary protobuf messages.
type serverCodec struct{}

func (serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(p.wire)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (serverCodec) Name() string { return "proto" }

package hubbletest

import (
	"fmt"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// fieldMask is a field mask as a tree of proto field names, the structure
// Hubble uses in cilium/cilium v1.20.2 pkg/hubble/parser/fieldmask. A nil
// or empty mask is inactive: flows are sent whole.
type fieldMask map[string]fieldMask

// newFieldMask validates fm against flow.Flow (paths use proto field names:
// "source.pod_name", "l4.TCP.destination_port", "IP.destination") and
// normalizes it, as fieldmask.New does.
func newFieldMask(fm *fieldmaskpb.FieldMask) (fieldMask, error) {
	if len(fm.GetPaths()) == 0 {
		return nil, nil
	}
	for _, p := range fm.GetPaths() {
		if _, err := fieldmaskpb.New(&flow.Flow{}, p); err != nil {
			return nil, fmt.Errorf("field_mask: invalid path %q: not a field path of flow.Flow", p)
		}
	}
	// Normalize sorts and drops paths covered by a parent path; work on a
	// copy so the request recorded for Requests stays as the client sent it.
	fm = proto.CloneOf(fm)
	fm.Normalize()
	m := make(fieldMask)
	for _, p := range fm.GetPaths() {
		m.add(p)
	}
	return m, nil
}

func (m fieldMask) add(path string) {
	head, rest, found := strings.Cut(path, ".")
	if !found {
		m[path] = nil
		return
	}
	if m[head] == nil {
		m[head] = make(fieldMask)
	}
	m[head].add(rest)
}

func (m fieldMask) active() bool { return len(m) > 0 }

// copy sets in dst, a new message, the fields of src selected by m, like
// Hubble's FieldMask.Copy on a freshly allocated flow: a leaf field is
// copied when set (sharing sub-messages with src, which is read-only here),
// a parent message is allocated even when src lacks it, and a oneof member
// is only followed when it is the one set in src.
func (m fieldMask) copy(dst, src protoreflect.Message) {
	fds := dst.Descriptor().Fields()
	for name, next := range m {
		fd := fds.ByName(protoreflect.Name(name))
		if len(next) == 0 {
			if src.Has(fd) {
				dst.Set(fd, src.Get(fd))
			}
			continue
		}
		if od := fd.ContainingOneof(); od != nil {
			if w := src.WhichOneof(od); w == nil || w.Name() != fd.Name() {
				continue
			}
		}
		next.copy(dst.Mutable(fd).Message(), src.Get(fd).Message())
	}
}

package baseline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/egressd/egressd"
)

// file is a baseline as JSON. The field order here is the order in files.
type file struct {
	APIVersion   string            `json:"apiVersion"`
	Kind         string            `json:"kind"`
	Namespace    string            `json:"namespace"`
	App          string            `json:"app"`
	Unbounded    bool              `json:"unbounded"`
	Note         string            `json:"note,omitempty"`
	Pods         *filePods         `json:"pods,omitempty"`
	Destinations []fileDestination `json:"destinations"`
	Suggestions  []fileSuggestion  `json:"suggestions,omitempty"`
}

// fileSuggestion is egressd.BaselineSuggestion in a file.
type fileSuggestion struct {
	Pattern  string   `json:"pattern"`
	Ports    []string `json:"ports"`
	Evidence int      `json:"evidence"`
	Examples []string `json:"examples,omitempty"`
	Warning  string   `json:"warning,omitempty"`
}

func toFileSuggestions(ss []egressd.BaselineSuggestion) []fileSuggestion {
	var out []fileSuggestion
	for _, s := range ss {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = p.String()
		}
		out = append(out, fileSuggestion{Pattern: s.Pattern, Ports: ports, Evidence: s.Evidence, Examples: s.Examples, Warning: s.Warning})
	}
	return out
}

// fromFileSuggestions converts suggestions from their file form; it fails
// on a port that does not parse.
func fromFileSuggestions(fs []fileSuggestion) ([]egressd.BaselineSuggestion, bool) {
	var out []egressd.BaselineSuggestion
	for _, f := range fs {
		s := egressd.BaselineSuggestion{Pattern: f.Pattern, Evidence: f.Evidence, Examples: f.Examples, Warning: f.Warning}
		for _, p := range f.Ports {
			n, proto, err := egressd.ParsePort(p)
			if err != nil {
				return nil, false
			}
			s.Ports = append(s.Ports, egressd.Port{Number: n, Protocol: proto})
		}
		out = append(out, s)
	}
	return out, true
}

// appendIndented appends v as encoding/json indents it at the second level.
func appendIndented(dst []byte, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("  ", "  ")
	_ = enc.Encode(v) // strings, numbers and lists of them always encode
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...)
}

// filePods is egressd.BaselinePods in a file.
type filePods struct {
	Selector     map[string]string `json:"selector,omitempty"`
	Unselectable string            `json:"unselectable,omitempty"`
	DNS          []fileResolver    `json:"dns,omitempty"`
}

type fileResolver struct {
	Kind    string `json:"kind"`
	Address string `json:"address,omitempty"`
}

// toFilePods and fromFilePods convert Pods to and from their file form.
func toFilePods(p *egressd.BaselinePods) *filePods {
	if p == nil {
		return nil
	}
	f := &filePods{Selector: p.Selector, Unselectable: p.Unselectable}
	for _, r := range p.Resolvers {
		f.DNS = append(f.DNS, fileResolver{Kind: string(r.Kind), Address: r.Addr})
	}
	return f
}

func fromFilePods(f *filePods) *egressd.BaselinePods {
	if f == nil {
		return nil
	}
	p := &egressd.BaselinePods{Selector: f.Selector, Unselectable: f.Unselectable}
	for _, r := range f.DNS {
		p.Resolvers = append(p.Resolvers, egressd.BaselineResolver{Kind: egressd.ResolverKind(r.Kind), Addr: r.Address})
	}
	return p
}

// appendPods appends the "pods" object as encoding/json indents it at the
// second level. It is small and rare beside the destinations, so
// encoding/json writes it.
func appendPods(dst []byte, p *egressd.BaselinePods) []byte {
	return appendIndented(dst, toFilePods(p))
}

type fileDestination struct {
	Name  string   `json:"name"`
	Ports []string `json:"ports"`
	Note  string   `json:"note,omitempty"`
}

// Marshal returns the file form of b: fixed field order, destinations sorted
// by name, ports by number then protocol, 2-space indent, a trailing newline,
// no HTML escaping. "unbounded" and "destinations" are always present; the
// notes only when set. Names are written in canonical form (lower case, no
// trailing dot). It fails on what Unmarshal would reject, so every file it
// writes loads again.
func Marshal(b egressd.Baseline) ([]byte, error) {
	nb, err := normalize(b)
	if err != nil {
		return nil, err
	}
	return marshalNormalized(nb)
}

// marshalNormalized is Marshal for a baseline normalize returned. It writes
// the bytes encoding/json would write for a file struct with SetIndent("",
// "  ") and SetEscapeHTML(false) (a test holds it to that), directly: export
// marshals every app twice, and re-indenting is most of encoding/json's cost.
func marshalNormalized(nb egressd.Baseline) ([]byte, error) {
	buf := make([]byte, 0, 192+96*len(nb.Destinations))
	buf = append(buf, "{\n  \"apiVersion\": "...)
	buf = appendString(buf, egressd.BaselineAPIVersion)
	buf = append(buf, ",\n  \"kind\": "...)
	buf = appendString(buf, egressd.BaselineKind)
	buf = append(buf, ",\n  \"namespace\": "...)
	buf = appendString(buf, nb.Namespace)
	buf = append(buf, ",\n  \"app\": "...)
	buf = appendString(buf, nb.App)
	buf = append(buf, ",\n  \"unbounded\": "...)
	buf = strconv.AppendBool(buf, nb.Unbounded)
	if nb.Note != "" {
		buf = append(buf, ",\n  \"note\": "...)
		buf = appendString(buf, nb.Note)
	}
	if nb.Pods != nil {
		buf = append(buf, ",\n  \"pods\": "...)
		buf = appendPods(buf, nb.Pods)
	}
	buf = append(buf, ",\n  \"destinations\": ["...)
	for i, d := range nb.Destinations {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n    {\n      \"name\": "...)
		buf = appendString(buf, d.Name)
		buf = append(buf, ",\n      \"ports\": ["...)
		for j, p := range d.Ports {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, "\n        \""...)
			buf = strconv.AppendUint(buf, uint64(p.Number), 10)
			buf = append(buf, '/')
			buf = append(buf, p.Protocol...) // canonical: no escaping needed
			buf = append(buf, '"')
		}
		if len(d.Ports) > 0 {
			buf = append(buf, "\n      "...)
		}
		buf = append(buf, ']')
		if d.Note != "" {
			buf = append(buf, ",\n      \"note\": "...)
			buf = appendString(buf, d.Note)
		}
		buf = append(buf, "\n    }"...)
	}
	if len(nb.Destinations) > 0 {
		buf = append(buf, "\n  "...)
	}
	buf = append(buf, ']')
	if len(nb.Suggestions) > 0 {
		buf = append(buf, ",\n  \"suggestions\": "...)
		buf = appendIndented(buf, toFileSuggestions(nb.Suggestions))
	}
	buf = append(buf, "\n}\n"...)
	return buf, nil
}

// appendString appends s as a JSON string. Names, ports and identities are
// plain ASCII and are copied; anything else (notes, mostly) goes through
// encoding/json so that escaping is exactly its own, without HTML escaping.
func appendString(dst []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...)
}

// Unmarshal parses a baseline file. source names the file in error messages,
// which read "source:line:column: what is wrong". It is strict: one JSON
// object and nothing after it, no unknown or repeated fields, apiVersion and
// kind as Marshal writes them, a valid namespace and app, and destinations
// whose names are DNS names, IP addresses or Cilium matchPatterns, each listed
// once with at least one port ("443/TCP"; "0/ANY" for any port). The result
// is normalised as Marshal writes it: names lower-cased, destinations and
// ports sorted, repeated ports removed.
func Unmarshal(data []byte, source string) (egressd.Baseline, error) {
	return unmarshal(data, source, nil)
}

// unmarshal is Unmarshal that also checks, when want is set, that the file
// names the app its path says it holds.
func unmarshal(data []byte, source string, want *egressd.App) (egressd.Baseline, error) {
	if b, ok := unmarshalCanonical(data, want); ok {
		return b, nil
	}
	return unmarshalStrict(data, source, want)
}

// unmarshalCanonical parses data the fast way, with encoding/json into a
// struct, and succeeds only when data is exactly what Marshal writes for the
// result. Such a file holds no repeated, unknown or oddly-cased fields, no
// invalid values and nothing after the object, so the strict decoder would
// return the same baseline; anything else goes to the strict decoder. Export
// reads back mostly its own files, and the strict decoder costs several
// times more.
func unmarshalCanonical(data []byte, want *egressd.App) (egressd.Baseline, bool) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.APIVersion != egressd.BaselineAPIVersion || f.Kind != egressd.BaselineKind {
		return egressd.Baseline{}, false
	}
	if want != nil && (f.Namespace != want.Namespace || f.App != want.Name) {
		return egressd.Baseline{}, false
	}
	b := egressd.Baseline{Namespace: f.Namespace, App: f.App, Unbounded: f.Unbounded, Note: f.Note, Pods: fromFilePods(f.Pods)}
	if len(f.Destinations) > 0 {
		b.Destinations = make([]egressd.BaselineDestination, len(f.Destinations))
	}
	for i, fd := range f.Destinations {
		d := egressd.BaselineDestination{Name: fd.Name, Note: fd.Note, Ports: make([]egressd.Port, len(fd.Ports))}
		for j, s := range fd.Ports {
			n, proto, err := egressd.ParsePort(s)
			if err != nil {
				return egressd.Baseline{}, false
			}
			d.Ports[j] = egressd.Port{Number: n, Protocol: proto}
		}
		b.Destinations[i] = d
	}
	var ok bool
	if b.Suggestions, ok = fromFileSuggestions(f.Suggestions); !ok {
		return egressd.Baseline{}, false
	}
	nb, err := normalize(b)
	if err != nil {
		return egressd.Baseline{}, false
	}
	out, err := marshalNormalized(nb)
	if err != nil || !bytes.Equal(out, data) {
		return egressd.Baseline{}, false
	}
	return nb, true
}

// unmarshalStrict parses data token by token, and locates every error.
func unmarshalStrict(data []byte, source string, want *egressd.App) (egressd.Baseline, error) {
	d := &decoder{data: data, source: source, dec: json.NewDecoder(bytes.NewReader(data))}
	// Check the syntax over the whole file first: json.Unmarshal's scanner
	// reports the offset of a syntax error from the start of the input,
	// while a Decoder's Token reports it from the start of the value it was
	// reading, which cannot be turned into a line and column.
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return egressd.Baseline{}, d.syntaxError(err)
	}
	b, err := d.baseline(want)
	if err != nil {
		return egressd.Baseline{}, err
	}
	nb, err := normalize(b)
	if err != nil {
		// decoder checks everything normalize does, with positions;
		// reaching this is a bug, still reported against the file.
		return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "%s: %s", source, egressd.ErrorMessage(err))
	}
	return nb, nil
}

// decoder walks a baseline file token by token, so that every error can
// point at the offending value, and so that repeated fields, which
// encoding/json silently accepts, are caught.
type decoder struct {
	data   []byte
	source string
	dec    *json.Decoder
}

// errorf returns an EINVALID error located at byte offset off.
func (d *decoder) errorf(off int64, format string, args ...any) error {
	line, col := position(d.data, off)
	return egressd.Errorf(egressd.EINVALID, "%s:%d:%d: %s", d.source, line, col, fmt.Sprintf(format, args...))
}

// position returns the 1-based line and byte column of offset off.
func position(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// next returns the offset where the next value starts: after the current
// position, any white space and one ':' or ',' separator.
func (d *decoder) next() int64 {
	off := skipSpace(d.data, d.dec.InputOffset())
	if off < int64(len(d.data)) && (d.data[off] == ':' || d.data[off] == ',') {
		off = skipSpace(d.data, off+1)
	}
	return off
}

// skipSpace returns the offset of the first byte at or after off that is not
// JSON white space.
func skipSpace(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\n', '\r':
			off++
		default:
			return off
		}
	}
	return off
}

// token reads the next token.
func (d *decoder) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, d.syntaxError(err)
	}
	return tok, nil
}

// syntaxError locates a JSON syntax error.
func (d *decoder) syntaxError(err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return d.errorf(int64(len(d.data)), "invalid JSON: unexpected end of file")
	case errors.As(err, &syn):
		// The scanner's messages are the only way to tell these apart.
		msg := strings.TrimPrefix(syn.Error(), "json: ")
		switch {
		case strings.Contains(msg, "unexpected end of JSON input"):
			return d.errorf(int64(len(d.data)), "invalid JSON: unexpected end of file")
		case strings.Contains(msg, "after top-level value"):
			return d.errorf(syn.Offset-1, "unexpected data after the baseline object: a file holds exactly one baseline")
		}
		// Offset counts the bytes read, the offending one included.
		return d.errorf(syn.Offset-1, "invalid JSON: %s", msg)
	default:
		return d.errorf(d.dec.InputOffset(), "invalid JSON: %s", err)
	}
}

// object reads an object, calling field for each key with the offset of the
// key, and rejects repeated keys. It returns the offset of the '{'.
func (d *decoder) object(what string, field func(key string, keyOff int64) error) (int64, error) {
	start := d.next()
	tok, err := d.token()
	if err != nil {
		return start, err
	}
	if tok != json.Delim('{') {
		return start, d.errorf(start, "%s: want a JSON object, got %s", what, describe(tok))
	}
	var seen []string
	for d.dec.More() {
		keyOff := d.next()
		tok, err := d.token()
		if err != nil {
			return start, err
		}
		key, _ := tok.(string) // the decoder only returns strings as keys
		for _, s := range seen {
			if s == key {
				return start, d.errorf(keyOff, "%s: field %q appears twice", what, key)
			}
		}
		seen = append(seen, key)
		if err := field(key, keyOff); err != nil {
			return start, err
		}
	}
	if _, err := d.token(); err != nil { // '}'
		return start, err
	}
	return start, nil
}

// array reads an array, calling elem for each element.
func (d *decoder) array(what string, elem func(i int) error) error {
	start := d.next()
	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('[') {
		return d.errorf(start, "%s: want a JSON array, got %s", what, describe(tok))
	}
	for i := 0; d.dec.More(); i++ {
		if err := elem(i); err != nil {
			return err
		}
	}
	_, err = d.token() // ']'
	return err
}

// string reads a string value and returns it with its offset.
func (d *decoder) string(what string) (string, int64, error) {
	off := d.next()
	tok, err := d.token()
	if err != nil {
		return "", off, err
	}
	s, ok := tok.(string)
	if !ok {
		return "", off, d.errorf(off, "%s: want a string, got %s", what, describe(tok))
	}
	return s, off, nil
}

func (d *decoder) bool(what string) (bool, error) {
	off := d.next()
	tok, err := d.token()
	if err != nil {
		return false, err
	}
	v, ok := tok.(bool)
	if !ok {
		return false, d.errorf(off, "%s: want true or false, got %s", what, describe(tok))
	}
	return v, nil
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' || v == '}' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

const topFields = "apiVersion, kind, namespace, app, unbounded, note, pods, destinations, suggestions"

func (d *decoder) baseline(want *egressd.App) (egressd.Baseline, error) {
	var (
		b                      egressd.Baseline
		apiVersion, kind       string
		apiVersionOff, kindOff int64
		nsOff, appOff          int64
		seen                   = map[string]bool{}
		names                  = map[string]int64{}
	)
	start, err := d.object("baseline", func(key string, keyOff int64) error {
		var err error
		seen[key] = true
		switch key {
		case "apiVersion":
			apiVersion, apiVersionOff, err = d.string(key)
		case "kind":
			kind, kindOff, err = d.string(key)
		case "namespace":
			b.Namespace, nsOff, err = d.string(key)
		case "app":
			b.App, appOff, err = d.string(key)
		case "unbounded":
			b.Unbounded, err = d.bool(key)
		case "note":
			b.Note, _, err = d.string(key)
		case "pods":
			b.Pods, err = d.pods()
		case "suggestions":
			b.Suggestions, err = d.suggestions()
		case "destinations":
			err = d.array(key, func(i int) error {
				dst, err := d.destination(i, names)
				if err == nil {
					b.Destinations = append(b.Destinations, dst)
				}
				return err
			})
		default:
			err = d.errorf(keyOff, "unknown field %q in baseline: want %s", key, topFields)
		}
		return err
	})
	if err != nil {
		return egressd.Baseline{}, err
	}
	// Exactly one value: anything but white space after it is an error.
	if off := skipSpace(d.data, d.dec.InputOffset()); off < int64(len(d.data)) {
		return egressd.Baseline{}, d.errorf(off, "unexpected data after the baseline object: a file holds exactly one baseline")
	}
	switch {
	case !seen["apiVersion"]:
		return egressd.Baseline{}, d.errorf(start, "missing field \"apiVersion\": want %q", egressd.BaselineAPIVersion)
	case apiVersion != egressd.BaselineAPIVersion:
		return egressd.Baseline{}, d.errorf(apiVersionOff, "apiVersion %s is not supported: want %q", quote(apiVersion), egressd.BaselineAPIVersion)
	case !seen["kind"]:
		return egressd.Baseline{}, d.errorf(start, "missing field \"kind\": want %q", egressd.BaselineKind)
	case kind != egressd.BaselineKind:
		return egressd.Baseline{}, d.errorf(kindOff, "kind %s is not supported: want %q", quote(kind), egressd.BaselineKind)
	case !seen["namespace"]:
		return egressd.Baseline{}, d.errorf(start, "missing field \"namespace\"")
	case !seen["app"]:
		return egressd.Baseline{}, d.errorf(start, "missing field \"app\"")
	}
	if err := (egressd.App{Namespace: b.Namespace, Name: b.App}).Validate(); err != nil {
		off := appOff
		if !egressd.ValidNamespace(b.Namespace) {
			off = nsOff
		}
		return egressd.Baseline{}, d.errorf(off, "%s", egressd.ErrorMessage(err))
	}
	if want != nil {
		if b.Namespace != want.Namespace {
			return egressd.Baseline{}, d.errorf(nsOff, "namespace %q does not match the file's directory %q: a baseline lives at <namespace>/<app>.json", b.Namespace, want.Namespace)
		}
		if b.App != want.Name {
			return egressd.Baseline{}, d.errorf(appOff, "app %q does not match the file name %q: a baseline lives at <namespace>/<app>.json", b.App, want.Name+".json")
		}
	}
	return b, nil
}

const destinationFields = "name, ports, note"

// destination reads destinations[i]; names maps the canonical names seen so
// far to their offsets, to report duplicates.
func (d *decoder) destination(i int, names map[string]int64) (egressd.BaselineDestination, error) {
	var (
		dst                 egressd.BaselineDestination
		haveName, havePorts bool
	)
	what := "destinations[" + strconv.Itoa(i) + "]"
	start, err := d.object(what, func(key string, keyOff int64) error {
		switch key {
		case "name":
			s, off, err := d.string(what + ".name")
			if err != nil {
				return err
			}
			name, ok := canonicalName(s, true)
			if !ok {
				return d.errorf(off, "%s", invalidNameMessage(s))
			}
			if prev, dup := names[name]; dup {
				line, col := position(d.data, prev)
				return d.errorf(off, "destination %q is listed twice (also at %d:%d): list each name once with all its ports", name, line, col)
			}
			names[name] = off
			dst.Name = name
			haveName = true
		case "ports":
			havePorts = true
			return d.array(what+".ports", func(j int) error {
				s, off, err := d.string(what + ".ports[" + strconv.Itoa(j) + "]")
				if err != nil {
					return err
				}
				n, proto, err := egressd.ParsePort(s)
				if err != nil {
					return d.errorf(off, "%s", egressd.ErrorMessage(err))
				}
				dst.Ports = append(dst.Ports, egressd.Port{Number: n, Protocol: proto})
				return nil
			})
		case "note":
			s, _, err := d.string(what + ".note")
			if err != nil {
				return err
			}
			dst.Note = s
		default:
			return d.errorf(keyOff, "unknown field %q in %s: want %s", key, what, destinationFields)
		}
		return nil
	})
	if err != nil {
		return dst, err
	}
	switch {
	case !haveName:
		return dst, d.errorf(start, "%s: missing field \"name\"", what)
	case !havePorts || len(dst.Ports) == 0:
		return dst, d.errorf(start, "%s (%s): no ports: list the ports the app uses, such as \"443/TCP\", or \"0/ANY\" for any port", what, dst.Name)
	}
	return dst, nil
}

// quote quotes s for an error message, shortened so that a hostile file
// cannot flood a log.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

const podsFields = "selector, unselectable, dns"

// pods reads the "pods" object.
func (d *decoder) pods() (*egressd.BaselinePods, error) {
	p := &egressd.BaselinePods{}
	_, err := d.object("pods", func(key string, keyOff int64) error {
		switch key {
		case "selector":
			p.Selector = map[string]string{}
			_, err := d.object("pods.selector", func(k string, kOff int64) error {
				v, off, err := d.string("pods.selector." + k)
				if err != nil {
					return err
				}
				if len(p.Selector) == egressd.MaxLabelsPerSet {
					return d.errorf(kOff, "pods.selector: more than %d labels", egressd.MaxLabelsPerSet)
				}
				if err := checkSelectorLabel(k, v); err != nil {
					if !validSelectorKey(k) || strings.Contains(k, ":") {
						off = kOff
					}
					return d.errorf(off, "%s", egressd.ErrorMessage(err))
				}
				p.Selector[k] = v
				return nil
			})
			return err
		case "unselectable":
			s, _, err := d.string("pods.unselectable")
			p.Unselectable = s
			return err
		case "dns":
			return d.array("pods.dns", func(i int) error {
				what := "pods.dns[" + strconv.Itoa(i) + "]"
				var r egressd.BaselineResolver
				start, err := d.object(what, func(k string, kOff int64) error {
					switch k {
					case "kind":
						s, _, err := d.string(what + ".kind")
						r.Kind = egressd.ResolverKind(s)
						return err
					case "address":
						s, _, err := d.string(what + ".address")
						r.Addr = s
						return err
					}
					return d.errorf(kOff, "unknown field %q in %s: want kind, address", k, what)
				})
				if err != nil {
					return err
				}
				if _, err := normalizeResolver(r); err != nil {
					return d.errorf(start, "%s", egressd.ErrorMessage(err))
				}
				p.Resolvers = append(p.Resolvers, r)
				return nil
			})
		}
		return d.errorf(keyOff, "unknown field %q in pods: want %s", key, podsFields)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

const suggestionFields = "pattern, ports, evidence, examples, warning"

// suggestions reads the "suggestions" array. Its entries are checked as
// normalize checks them, with positions.
func (d *decoder) suggestions() ([]egressd.BaselineSuggestion, error) {
	var out []egressd.BaselineSuggestion
	err := d.array("suggestions", func(i int) error {
		what := "suggestions[" + strconv.Itoa(i) + "]"
		var s egressd.BaselineSuggestion
		start, err := d.object(what, func(key string, keyOff int64) error {
			switch key {
			case "pattern":
				v, off, err := d.string(what + ".pattern")
				if err != nil {
					return err
				}
				if !isPattern(v) || !egressd.ValidPattern(v) {
					return d.errorf(off, "%s.pattern %s is not a Cilium matchPattern such as *.example.com", what, quote(v))
				}
				s.Pattern = v
			case "ports":
				return d.array(what+".ports", func(j int) error {
					v, off, err := d.string(what + ".ports[" + strconv.Itoa(j) + "]")
					if err != nil {
						return err
					}
					n, proto, err := egressd.ParsePort(v)
					if err != nil {
						return d.errorf(off, "%s", egressd.ErrorMessage(err))
					}
					s.Ports = append(s.Ports, egressd.Port{Number: n, Protocol: proto})
					return nil
				})
			case "evidence":
				off := d.next()
				tok, err := d.token()
				if err != nil {
					return err
				}
				n, ok := tok.(float64)
				if !ok || n < 0 || n != float64(int(n)) || n > 1e9 {
					return d.errorf(off, "%s.evidence: want a count of names, got %v", what, tok)
				}
				s.Evidence = int(n)
			case "examples":
				return d.array(what+".examples", func(j int) error {
					v, _, err := d.string(what + ".examples[" + strconv.Itoa(j) + "]")
					s.Examples = append(s.Examples, v)
					return err
				})
			case "warning":
				v, _, err := d.string(what + ".warning")
				s.Warning = v
				return err
			default:
				return d.errorf(keyOff, "unknown field %q in %s: want %s", key, what, suggestionFields)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if s.Pattern == "" {
			return d.errorf(start, "%s: missing field \"pattern\"", what)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

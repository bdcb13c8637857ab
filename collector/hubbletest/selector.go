package hubbletest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Label selectors as Hubble's label filters read them
// (cilium/cilium v1.20.2 pkg/hubble/filters/labels.go and labelparser.go):
// a Kubernetes label selector whose keys may carry a Cilium source prefix
// ("k8s:app=foo", "reserved:world"). A key without a prefix matches labels
// of any source. The flow's labels are Cilium labels "source:key=value"
// (pkg/labels ParseLabel), matched by source and key as pkg/labels
// Label.HasKey does, including its CIDR-aware matching: selector
// "cidr:10.0.0.0/8" matches a flow label "cidr:10.1.2.3/32".

// anySource is Cilium's labels.LabelSourceAny.
const anySource = "any"

// label is one parsed Cilium label.
type label struct{ source, key, value string }

// parseLabels parses flow labels like Cilium's ParseLabel: "source:key=value",
// "$key" for reserved labels, and "unspec" as the source of a label without
// one.
func parseLabels(ss []string) []label {
	ls := make([]label, 0, len(ss))
	for _, s := range ss {
		var l label
		switch i := strings.IndexByte(s, ':'); {
		case strings.HasPrefix(s, "$"):
			l.source, s = "reserved", s[1:]
		case i >= 0:
			l.source, s = s[:i], s[i+1:]
		default:
			l.source = "unspec"
		}
		if i := strings.IndexByte(s, '='); i < 0 {
			l.key = s
		} else if i == 0 && l.source == "reserved" {
			l.key = s[1:]
		} else {
			l.key, l.value = s[:i], s[i+1:]
		}
		ls = append(ls, l)
	}
	return ls
}

// cidrSource is Cilium's labels.LabelSourceCIDR.
const cidrSource = "cidr"

// selectorKey is the key a requirement looks up.
type selectorKey struct {
	source, key string
	cidr        netip.Prefix // parsed key when source is cidrSource
}

// lookup returns the value of the first label with key k, like Cilium's
// K8sLabelArray.Lookup.
func (k selectorKey) lookup(ls []label) (string, bool) {
	for _, l := range ls {
		if k.source != anySource && k.source != l.source {
			continue
		}
		if k.source == cidrSource {
			// Label.HasKey: the selector's prefix must contain the label's;
			// keys that are not prefixes never match.
			if lc, err := cidrKeyToPrefix(l.key); err == nil && k.cidr.IsValid() && k.cidr.Bits() <= lc.Bits() && k.cidr.Contains(lc.Addr()) {
				return l.value, true
			}
			continue
		}
		if k.key == l.key {
			return l.value, true
		}
	}
	return "", false
}

// cidrKeyToPrefix parses the key of a cidr label, where IPv6 addresses
// write ":" as "-" (pkg/labels keyToPrefix).
func cidrKeyToPrefix(key string) (netip.Prefix, error) {
	return netip.ParsePrefix(strings.ReplaceAll(key, "-", ":"))
}

type operator int

const (
	opExists operator = iota
	opDoesNotExist
	opIn // also = and ==
	opNotIn
	opGt
	opLt
)

type requirement struct {
	key    selectorKey
	op     operator
	values []string
	num    int64 // for opGt and opLt
}

// matches follows k8s.io/apimachinery labels.Requirement.Matches.
func (r requirement) matches(ls []label) bool {
	v, ok := r.key.lookup(ls)
	switch r.op {
	case opExists:
		return ok
	case opDoesNotExist:
		return !ok
	case opIn:
		return ok && slices.Contains(r.values, v)
	case opNotIn:
		return !ok || !slices.Contains(r.values, v)
	case opGt, opLt:
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		if r.op == opGt {
			return n > r.num
		}
		return n < r.num
	}
	return false
}

// selector is a conjunction of requirements; empty matches everything, as
// the Kubernetes parser's result for "".
type selector []requirement

func (s selector) matches(ls []label) bool {
	for _, r := range s {
		if !r.matches(ls) {
			return false
		}
	}
	return true
}

// token kinds of the selector lexer, which follows the Kubernetes one:
// identifiers are runs of characters that are neither white space nor one
// of the operator characters.
type token struct {
	kind string // "id", "(", ")", ",", "=", "==", "!=", "!", ">", "<", "in", "notin", "end"
	text string
}

func lexSelector(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == ',' || c == '>' || c == '<':
			toks = append(toks, token{kind: string(c)})
			i++
		case c == '=' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				toks = append(toks, token{kind: string(c) + "="})
				i += 2
			} else {
				toks = append(toks, token{kind: string(c)})
				i++
			}
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r(),<>=!", rune(s[j])) {
				j++
			}
			text := s[i:j]
			kind := "id"
			if text == "in" || text == "notin" {
				kind = text
			}
			toks = append(toks, token{kind: kind, text: text})
			i = j
		}
	}
	return append(toks, token{kind: "end"})
}

func parseSelector(s string) (selector, error) {
	p := &selectorParser{toks: lexSelector(s)}
	var sel selector
	if p.peek().kind == "end" {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return nil, err
		}
		sel = append(sel, r)
		switch t := p.next(); t.kind {
		case "end":
			return sel, nil
		case ",":
		default:
			return nil, fmt.Errorf("expected \",\" or end of selector, found %s", describe(t))
		}
	}
}

type selectorParser struct {
	toks []token
	pos  int
}

func (p *selectorParser) peek() token { return p.toks[p.pos] }

func (p *selectorParser) next() token {
	t := p.toks[p.pos]
	if t.kind != "end" {
		p.pos++
	}
	return t
}

func describe(t token) string {
	switch t.kind {
	case "end":
		return "end of selector"
	case "id":
		return fmt.Sprintf("%q", t.text)
	}
	return fmt.Sprintf("%q", t.kind)
}

func (p *selectorParser) requirement() (requirement, error) {
	var r requirement
	if p.peek().kind == "!" {
		p.next()
		k, err := p.key()
		if err != nil {
			return r, err
		}
		r.key, r.op = k, opDoesNotExist
		return r, nil
	}
	k, err := p.key()
	if err != nil {
		return r, err
	}
	r.key = k
	switch t := p.peek(); t.kind {
	case ",", "end":
		r.op = opExists
		return r, nil
	case "=", "==", "!=":
		p.next()
		v, err := p.value()
		if err != nil {
			return r, err
		}
		r.op, r.values = opIn, []string{v}
		if t.kind == "!=" {
			r.op = opNotIn
		}
		return r, nil
	case "in", "notin":
		p.next()
		vs, err := p.valueSet()
		if err != nil {
			return r, err
		}
		r.op, r.values = opIn, vs
		if t.kind == "notin" {
			r.op = opNotIn
		}
		return r, nil
	case ">", "<":
		p.next()
		v := p.next()
		if v.kind != "id" {
			return r, fmt.Errorf("expected an integer after %q, found %s", t.kind, describe(v))
		}
		n, err := strconv.ParseInt(v.text, 10, 64)
		if err != nil {
			return r, fmt.Errorf("expected an integer after %q, found %q", t.kind, v.text)
		}
		r.op, r.num = opGt, n
		if t.kind == "<" {
			r.op = opLt
		}
		return r, nil
	default:
		return r, fmt.Errorf("expected an operator (=, ==, !=, in, notin, >, <) after key, found %s", describe(t))
	}
}

// key parses "source:key" or "key" (any source), the translation of
// labelparser.go's translateKey.
func (p *selectorParser) key() (selectorKey, error) {
	t := p.next()
	if t.kind != "id" {
		return selectorKey{}, fmt.Errorf("expected a label key, found %s", describe(t))
	}
	k := selectorKey{source: anySource, key: t.text}
	if i := strings.IndexByte(t.text, ':'); i >= 0 {
		k.source, k.key = t.text[:i], t.text[i+1:]
	}
	if k.source == "" || k.key == "" {
		return k, fmt.Errorf("invalid label key %q: want key or source:key", t.text)
	}
	if err := checkLabelName(k.key, true); err != nil {
		return k, fmt.Errorf("invalid label key %q: %w", t.text, err)
	}
	if k.source == cidrSource {
		// An invalid prefix is not an error in Cilium either: it matches
		// no label.
		k.cidr, _ = cidrKeyToPrefix(k.key)
	}
	return k, nil
}

func (p *selectorParser) value() (string, error) {
	switch t := p.peek(); t.kind {
	case "id":
		p.next()
		if err := checkLabelName(t.text, false); err != nil {
			return "", fmt.Errorf("invalid label value %q: %w", t.text, err)
		}
		return t.text, nil
	case ",", "end", ")":
		return "", nil // an empty value, as Kubernetes allows "key="
	default:
		return "", fmt.Errorf("expected a label value, found %s", describe(t))
	}
}

func (p *selectorParser) valueSet() ([]string, error) {
	if t := p.next(); t.kind != "(" {
		return nil, fmt.Errorf("expected \"(\" after in/notin, found %s", describe(t))
	}
	var vs []string
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		switch t := p.next(); t.kind {
		case ",":
		case ")":
			return vs, nil
		default:
			return nil, fmt.Errorf("expected \",\" or \")\" in value set, found %s", describe(t))
		}
	}
}

// checkLabelName is a lenient form of the Kubernetes label key and value
// syntax: the characters a label may hold, and for values at most 63 of
// them. Keys may also hold "/" (a prefix) and ":" (Cilium's cidr keys use
// "-" instead, but be lenient).
func checkLabelName(s string, isKey bool) error {
	if !isKey && len(s) > 63 {
		return errors.New("longer than 63 characters")
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
		case isKey && (r == '/' || r == ':'):
		default:
			return fmt.Errorf("invalid character %q", r)
		}
	}
	return nil
}

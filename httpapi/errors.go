package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/egressd/egressd"
)

// Error codes of conditions only HTTP has, next to egressd's (EINVALID,
// ENOTFOUND, EUNAUTHORIZED, ECONFLICT, EINTERNAL). Clients see them in the
// "code" field of error bodies.
const (
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "too_large"
	codeDisabled         = "disabled"
	codeTimeout          = "timeout"
	codeTooManyRequests  = "too_many_requests"
	codeCanceled         = "canceled"
)

// statusClientClosedRequest is what a request whose client went away is
// counted as (nginx's 499): nobody reads the answer, but the metrics should
// not call it a server error.
const statusClientClosedRequest = 499

// status maps an error code to the HTTP status it is answered with. It is
// the only place that does.
func status(code string) int {
	switch code {
	case egressd.EINVALID:
		return http.StatusBadRequest
	case egressd.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case egressd.ENOTFOUND:
		return http.StatusNotFound
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case egressd.ECONFLICT:
		return http.StatusConflict
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeTooManyRequests:
		return http.StatusTooManyRequests
	case codeCanceled:
		return statusClientClosedRequest
	case codeDisabled:
		return http.StatusServiceUnavailable
	case codeTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// errorBody is the shape of every error answer:
// {"error":{"code":"invalid","message":"..."}}.
type errorBody struct {
	Error errorJSON `json:"error"`
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers err with its status and a JSON error body. Internal
// errors are logged here, once, and answered with a generic message: their
// text (SQL, addresses) is for the operator's logs, not for clients.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := egressd.ErrorCode(err)
	msg := egressd.ErrorMessage(err)
	if code == egressd.EINTERNAL {
		switch {
		case errors.Is(err, context.DeadlineExceeded) || r.Context().Err() == context.DeadlineExceeded:
			code, msg = codeTimeout, fmt.Sprintf("the request took longer than %s", s.opts.RequestTimeout)
		case errors.Is(err, context.Canceled) || r.Context().Err() == context.Canceled:
			code, msg = codeCanceled, "the client closed the request"
		}
	}
	st := status(code)
	switch {
	case st == http.StatusInternalServerError:
		s.log.Error("http_request_failed", "method", r.Method, "route", routePattern(r), "err", err)
		code, msg = egressd.EINTERNAL, "internal error"
	case code == codeTimeout:
		s.log.Warn("http_request_timeout", "method", r.Method, "route", routePattern(r), "err", err)
	}
	writeJSON(w, st, errorBody{Error: errorJSON{Code: code, Message: msg}})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// decodeBody decodes a request body that must hold exactly one JSON object
// matching v, and nothing else: unknown fields, a second value and trailing
// garbage are errors. fields lists v's fields for the unknown-field message.
// Every error it returns is EINVALID (400) or, past the size limit,
// too_large (413).
func decodeBody(r io.Reader, limit int64, v any, fields string) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err, limit, fields)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return bodyError(err, limit, fields)
		}
		return egressd.Errorf(egressd.EINVALID, "request body: want one JSON object and nothing after it")
	}
	return nil
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// bodyError turns a decoding error into a message that says what to fix.
func bodyError(err error, limit int64, fields string) error {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case tooLarge(err):
		return egressd.Errorf(codeTooLarge, "request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return egressd.Errorf(egressd.EINVALID, "request body is empty: want a JSON object with %s", fields)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return egressd.Errorf(egressd.EINVALID, "request body: the JSON ends early")
	case errors.As(err, &syntax):
		return egressd.Errorf(egressd.EINVALID, "request body: invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return egressd.Errorf(egressd.EINVALID, "request body: want a JSON object with %s, got %s", fields, typeErr.Value)
		}
		// Bodies are flat objects: the last element is the JSON key, also
		// for fields of an embedded struct ("acceptKey.port").
		field := typeErr.Field[strings.LastIndexByte(typeErr.Field, '.')+1:]
		return egressd.Errorf(egressd.EINVALID, "request body: field %q: want %s, got %s", field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return egressd.Errorf(egressd.EINVALID, "request body: unknown field %s: the fields are %s", name, fields)
	}
	return egressd.Errorf(egressd.EINVALID, "request body: %v", err)
}

// jsonType names a Go kind the way a JSON body writes it.
func jsonType(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "true or false"
	}
	return "a " + kind
}

package httpapi_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

func TestTokenPrintsRedacted(t *testing.T) {
	t.Parallel()
	opts := httpapi.DefaultOptions()
	opts.Token = testToken
	secrets := []string{testToken, hex.EncodeToString([]byte(testToken))}

	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		out = append(out, fmt.Sprintf(verb, opts), fmt.Sprintf(verb, opts.Token), fmt.Sprintf(verb, &opts))
	}
	out = append(out, fmt.Sprint(opts), fmt.Sprintln(opts.Token), opts.Token.String())
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(h(&b)).Info("starting", "options", opts, "token", opts.Token, "ptr", &opts)
		out = append(out, b.String())
	}
	j, err := json.Marshal(struct{ Token httpapi.Token }{opts.Token})
	require.NoError(t, err)
	out = append(out, string(j))

	for _, s := range out {
		for _, secret := range secrets {
			require.NotContains(t, s, secret)
		}
	}
	require.Contains(t, fmt.Sprint(opts), "[REDACTED]")
	require.Equal(t, `httpapi.Token("[REDACTED]")`, fmt.Sprintf("%#v", opts.Token))
	require.JSONEq(t, `{"Token":"[REDACTED]"}`, string(j))
	require.Equal(t, "", httpapi.Token("").String(), "an unset token prints empty, so logs tell set from unset")
}

// TestTokenNeverLogged runs every mutation outcome with debug logging and
// checks that neither the token nor a wrong guess reaches the logs.
func TestTokenNeverLogged(t *testing.T) {
	t.Parallel()
	const guess = "Bearer guess-guess-guess-guess-0001"
	e := newEnv(t, envOpts{})
	e.record(novel(recyclarr, github, now))
	body := `{"destination":"api.github.com","port":443}`
	e.do(http.MethodPost, acceptedPath, body, bearer)                 // 201
	e.do(http.MethodPost, acceptedPath, body, guess)                  // 401
	e.do(http.MethodPost, acceptedPath, body, "")                     // 401
	e.do(http.MethodPost, acceptedPath, `{"x":1}`, bearer)            // 400
	e.do(http.MethodDelete, acceptedPath, body, bearer)               // 204
	e.do(http.MethodDelete, acceptedPath, body, bearer)               // 404
	e.do(http.MethodPost, acceptedPath+"?token="+testToken, body, "") // 401; the query is not logged either

	// The internal-error path, through a store that fails.
	f := &fakeStore{appClusters: seenEverywhere, accept: func(context.Context, egressd.Accepted) error { return errors.New("accept: connection reset") }}
	fe := newEnv(t, envOpts{backends: f.backends()})
	fe.do(http.MethodPost, acceptedPath, body, bearer).requireError(t, http.StatusInternalServerError, "internal")

	logs := e.logs.String() + fe.logs.String()
	for _, want := range []string{"http_request", "destination_accepted", "destination_unaccepted", "http_unauthorized", "http_request_failed"} {
		require.Contains(t, logs, want, "the test covers every log line of a mutation")
	}
	require.NotContains(t, logs, testToken)
	require.NotContains(t, logs, guess[len("Bearer "):])
}

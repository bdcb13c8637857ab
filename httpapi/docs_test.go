package httpapi_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/httpapi"
)

// TestAPIDocShowsEveryRoute: docs/api.md shows a request of every route
// the API serves, with its method, and none the API does not serve.
func TestAPIDocShowsEveryRoute(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/api.md")
	require.NoError(t, err)
	doc := string(b)
	store := &readStore{}
	h, err := httpapi.New(httpapi.DefaultOptions(), httpapi.Backends{Apps: store, Destinations: store, Anomalies: store, Accepted: store}, nil, nil)
	require.NoError(t, err)
	routes, ok := h.(chi.Routes)
	require.True(t, ok, "httpapi.New returns a chi router")
	served := map[string]bool{}
	require.NoError(t, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/api/") {
			return nil
		}
		path := regexp.QuoteMeta(route)
		path = regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(path, `[a-z0-9.-]+`)
		want := `\$EGRESSD` + path + `[?"]`
		if method != http.MethodGet {
			want = `-X ` + method + ` "` + want
		}
		require.Regexp(t, want, doc, "docs/api.md shows %s %s", method, route)
		served[regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllString(route, "X")] = true
		return nil
	}))
	require.NotEmpty(t, served)
	for _, m := range regexp.MustCompile(`\$EGRESSD(/api/[^?" ]+)`).FindAllStringSubmatch(doc, -1) {
		route := m[1]
		known := false
		for r := range served {
			known = known || regexp.MustCompile(`^`+strings.ReplaceAll(regexp.QuoteMeta(r), "X", `[^/]+`)+`$`).MatchString(route)
		}
		require.True(t, known, "docs/api.md shows %s, which the API does not serve", route)
	}
}

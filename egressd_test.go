package egressd_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
)

func TestAppValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		app egressd.App
		ok  bool
	}{
		{egressd.App{Namespace: "media", Name: "recyclarr"}, true},
		{egressd.App{Namespace: "host", Name: "k8s-node-2.example.internal"}, true},
		{egressd.App{Namespace: "media", Name: "Home_Assistant"}, true},
		{egressd.App{Namespace: "../etc", Name: "x"}, false},
		{egressd.App{Namespace: "media", Name: ".."}, false},
		{egressd.App{Namespace: "media", Name: "a/b"}, false},
		{egressd.App{Namespace: "Media", Name: "x"}, false},
		{egressd.App{Namespace: "media", Name: ""}, false},
		{egressd.App{Namespace: "media", Name: strings.Repeat("a", egressd.MaxAppLen+1)}, false},
		{egressd.App{Namespace: "media", Name: "x\x00y"}, false},
		{egressd.App{Namespace: "media", Name: "x", Cluster: "bad/cluster"}, false},
	}
	for _, tt := range tests {
		err := tt.app.Validate()
		if tt.ok {
			require.NoError(t, err, "%+v", tt.app)
			continue
		}
		require.Error(t, err, "%+v", tt.app)
		require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	}
	a, err := egressd.ParseApp("media/recyclarr")
	require.NoError(t, err)
	require.Equal(t, "media/recyclarr", a.String())
	_, err = egressd.ParseApp("recyclarr")
	require.ErrorContains(t, err, "want NAMESPACE/APP")
}

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"API.GitHub.com.":                "api.github.com",
		"api.github.com":                 "api.github.com",
		"_dmarc.example":                 "_dmarc.example",
		"":                               "",
		".":                              "",
		"a..b":                           "",
		"bad name.com":                   "",
		"x\n.example.com":                "",
		"*.example.com":                  "",
		"exämple.com":                    "",
		strings.Repeat("a", 64) + ".com": "",
	} {
		got, ok := egressd.NormalizeName(in)
		require.Equal(t, want != "", ok, in)
		require.Equal(t, want, got, in)
	}
	require.True(t, egressd.ValidPattern("*.githubusercontent.com"))
	require.True(t, egressd.ValidPattern("**.example.com"))
	require.True(t, egressd.ValidPattern("1.1.1.1"))
	require.False(t, egressd.ValidPattern("exa mple.com"))
}

func TestPorts(t *testing.T) {
	t.Parallel()
	n, p, err := egressd.ParsePort("443/tcp")
	require.NoError(t, err)
	require.Equal(t, "443/TCP", egressd.FormatPort(n, p))
	n, p, err = egressd.ParsePort("53")
	require.NoError(t, err)
	require.Equal(t, "53/TCP", egressd.FormatPort(n, p))
	for _, bad := range []string{"70000/TCP", "x/TCP", "443/QUIC", "-1/UDP"} {
		_, _, err := egressd.ParsePort(bad)
		require.ErrorContains(t, err, bad)
	}
	d := egressd.Destination{Name: "1.1.1.1", Port: 443, Protocol: egressd.ProtoTCP}
	require.True(t, d.IsIP())
	require.Equal(t, "1.1.1.1:443/TCP", d.String())
}

func TestVerdictSet(t *testing.T) {
	t.Parallel()
	var s egressd.VerdictSet
	s = s.Add(egressd.VerdictDropped).Add(egressd.VerdictForwarded).Add(egressd.Verdict(200))
	require.Equal(t, []string{"UNKNOWN", "FORWARDED", "DROPPED"}, s.Names())
	require.True(t, egressd.VerdictDropped.Denied())
	require.False(t, egressd.VerdictRedirected.Denied())
}

func TestErrors(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("cursor: %w", egressd.Errorf(egressd.ENOTFOUND, "no cursor for %q", "x"))
	require.ErrorIs(t, err, egressd.ErrNotFound)
	require.Equal(t, egressd.ENOTFOUND, egressd.ErrorCode(err))
	require.Equal(t, `no cursor for "x"`, egressd.ErrorMessage(err))
	plain := errors.New("pq: connection refused")
	require.Equal(t, egressd.EINTERNAL, egressd.ErrorCode(plain))
	require.Equal(t, "internal error", egressd.ErrorMessage(plain))
	require.Equal(t, "", egressd.ErrorCode(nil))
}

func TestNameSourceString(t *testing.T) {
	t.Parallel()
	for s, want := range map[egressd.NameSource]string{
		egressd.NameFromFlow: "flow", egressd.NameFromDNS: "dns", egressd.NameIsIP: "ip", 0: "unknown", 200: "unknown",
	} {
		require.Equal(t, want, s.String(), "NameSource(%d)", uint8(s))
	}
}

func TestLeaseLost(t *testing.T) {
	t.Parallel()
	require.True(t, egressd.LeaseLost(fmt.Errorf("renew: %w", egressd.ErrLeaseLost)))
	require.False(t, egressd.LeaseLost(egressd.Errorf(egressd.ECONFLICT, "another conflict")))
	require.False(t, egressd.LeaseLost(nil))
}

func TestLabelLinesRoundTrip(t *testing.T) {
	t.Parallel()
	ls := []egressd.Label{{Key: "app.kubernetes.io/name", Value: "web"}, {Key: "empty", Value: ""}, {Key: "k8s-app", Value: "a=b"}}
	s := egressd.LabelLines(ls)
	require.Equal(t, "app.kubernetes.io/name=web\nempty=\nk8s-app=a=b\n", s)
	require.Equal(t, ls, egressd.ParseLabelLines(s))
	require.Empty(t, egressd.ParseLabelLines(""))
}

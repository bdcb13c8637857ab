package main

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
)

// serveEnvVars are the variables serve reads.
var serveEnvVars = []string{"HUBBLE_ADDRESS", "ALERTMANAGER_URL", "PROMETHEUS_URL", "EGRESSD_API_TOKEN", "DATABASE_URL"}

// parseServeWith runs parseServe with env as the environment, returning
// what it printed too (the flag package prints usage on mistakes).
func parseServeWith(env map[string]string, args ...string) (serveSettings, string, error) {
	var out bytes.Buffer
	c := &CLI{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(k string) string { return env[k] }}
	s, err := c.parseServe(args)
	return s, out.String(), err
}

func TestParseServeErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	hubble := map[string]string{"HUBBLE_ADDRESS": "hubble-relay:4245"}
	with := func(k, v string) map[string]string {
		env := map[string]string{"HUBBLE_ADDRESS": "hubble-relay:4245"}
		env[k] = v
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no hubble", nil, nil, "serve: --hubble-address is required"},
		{"positional argument", hubble, []string{"extra"}, `serve: unexpected argument "extra"`},
		{"unknown flag", hubble, []string{"--frob"}, "flag provided but not defined: --frob"},
		{"bad duration", hubble, []string{"--retention", "soon"}, `invalid value "soon" for flag --retention: not a duration`},
		{"missing value", hubble, []string{"--listen"}, "flag needs an argument: --listen"},
		{"short retention", hubble, []string{"--retention", "1h"}, "serve: --retention 1h is shorter than the default baseline window"},
		{"prometheus duration units", hubble, []string{"--retention", "2d"}, "serve: --retention 2d is shorter than the default baseline window"},
		{"backoff", hubble, []string{"--hubble-backoff-max", "0s"}, "--hubble-backoff-max: collector: ClientOptions.BackoffMax must be >= BackoffMin"},
		{"negative backoff", hubble, []string{"--hubble-backoff-max", "-1s"}, `invalid value "-1s" for flag --hubble-backoff-max: not a duration`},
		{"cert without key", hubble, []string{"--hubble-tls-cert", "c.pem"}, "(--hubble-tls-cert, --hubble-tls-key)"},
		{"log level", hubble, []string{"--log-level", "loud"}, `invalid value "loud" for flag --log-level: want debug, info, warn or error`},
		{"cidr", hubble, []string{"--internal-cidrs", "10.0.0.0/33"}, `--internal-cidrs: invalid CIDR "10.0.0.0/33"`},
		{"precedence", hubble, []string{"--app-precedence", "owner"}, `--app-precedence: collector: Options.AppPrecedence entry "owner"`},
		{"flush interval", hubble, []string{"--flush-interval", "0s"}, "--flush-interval: collector: AggregatorOptions.FlushInterval must be > 0"},
		{"max keys", hubble, []string{"--max-keys", "-1"}, "--max-keys: collector: AggregatorOptions.MaxKeys must be > 0"},
		{"max keys per app", hubble, []string{"--max-keys-per-app", "0"}, "--max-keys-per-app: "},
		{"replica id", with("POD_NAME", "pod\nname"), nil, "--replica-id: at most 256 characters, no control characters"},
		{"per-node without a node", hubble, []string{"--per-node"}, "--per-node: set --source or $NODE_NAME"},
		{"source of replay", hubble, []string{"--source", "replay:node-1@0"}, `--source "replay:node-1@0": the prefix replay: is egressd's own`},
		{"source of a singleton", hubble, []string{"--source", "singleton:volume"}, `--source "singleton:volume": the prefix singleton: is egressd's own`},
		{"source control character", hubble, []string{"--source", "node/a\tb"}, "--source: at most 256 characters, no control characters"},
		{"cluster domain", hubble, []string{"--cluster-domains", "a b"}, `--cluster-domains: collector: Options.ClusterDomains entry "a b"`},
		{"unbounded", hubble, []string{"--unbounded-apps", "noslash"}, "--unbounded-apps: "},
		{"flood", hubble, []string{"--flood-threshold", "0"}, "--flood-threshold: detector: Options.FloodThreshold must be > 0"},
		{"volume factor", hubble, []string{"--volume-factor", "0.5"}, "--volume-factor: detector: VolumeOptions.Factor must be >= 1"},
		{"alertmanager env", with("ALERTMANAGER_URL", "ftp://am:9093"), nil, "--alertmanager-url: alerts: Options.Targets[0]"},
		{"alertmanager duplicate", hubble, []string{"--alertmanager-url", "http://am:9093,http://am:9093/"}, "--alertmanager-url: alerts: Options.Targets[1]"},
		{"dns tunnel names", hubble, []string{"--dns-tunnel-names", "-1"}, "--dns-tunnel-names: detector: Options.DNSTunnelNames must be >= 0"},
		{"external url", with("ALERTMANAGER_URL", "http://am:9093"), []string{"--external-url", "egressd"}, "--external-url: alerts: Options.ExternalURL"},
		{"prometheus env", with("PROMETHEUS_URL", "prometheus:9090"), nil, "--prometheus-url: detector: PrometheusOptions.URL"},
		{"short token", with("EGRESSD_API_TOKEN", "short"), nil, "EGRESSD_API_TOKEN: httpapi: Options.Token (EGRESSD_API_TOKEN) must be at least"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := parseServeWith(tt.env, tt.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err), "a configuration mistake is a usage error")
		})
	}
}

func TestParseServeReadsEverything(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HUBBLE_ADDRESS":    "hubble-relay:4245",
		"ALERTMANAGER_URL":  "http://am-0:9093, http://am-1:9093",
		"PROMETHEUS_URL":    "http://prometheus:9090",
		"EGRESSD_API_TOKEN": strings.Repeat("t", 32),
		"DATABASE_URL":      "postgres://egressd:pw@db/egressd",
	}
	s, _, err := parseServeWith(env, "--listen", "127.0.0.1:0", "--retention", "0", "--baseline-dir", t.TempDir(), "--unbounded-apps", "media/plex")
	require.NoError(t, err)
	cfg := s.config
	require.Nil(t, cfg.DB, "parseServe opens nothing")
	require.Equal(t, "hubble-relay:4245", cfg.Client.Address)
	require.Equal(t, []string{"http://am-0:9093", "http://am-1:9093"}, cfg.Alerts.Targets)
	require.Equal(t, "http://prometheus:9090", cfg.Prometheus.URL)
	require.Equal(t, "bytes/s", cfg.Detect.Volume.Unit, "Prometheus is the volume source")
	require.Equal(t, cfg.Detect.Volume.HistoryWindow, cfg.Prometheus.HistoryWindow)
	require.Equal(t, "127.0.0.1:0", cfg.Listen)
	require.Equal(t, time.Duration(0), cfg.Retention)
	require.Equal(t, 24*time.Hour, cfg.AlertTTL)
	require.Len(t, cfg.Detect.Unbounded, 1)
	require.Equal(t, "postgres://egressd:pw@db/egressd", s.common.databaseURL)
	require.NotNil(t, s.log)

	s, _, err = parseServeWith(env, "--hubble-backoff-max", "200ms")
	require.NoError(t, err)
	require.Equal(t, 200*time.Millisecond, s.config.Client.BackoffMin, "a maximum below the first wait lowers it")
	require.Equal(t, 200*time.Millisecond, s.config.Client.BackoffMax)
}

// TestServeUsageHidesSecrets: --help prints every flag's default, and
// defaults come from the environment.
func TestServeUsageHidesSecrets(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":     "postgres://egressd:s3cret-db-pw@db/egressd",
		"ALERTMANAGER_URL": "https://ops:s3cret-am-pw@am:9093",
		"PROMETHEUS_URL":   "https://ops:s3cret-prom-pw@prometheus:9090",
	}
	_, out, err := parseServeWith(env, "-h")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out, "--database-url")
	require.Contains(t, out, "xxxxx", "the default is shown, redacted")
	require.NotContains(t, out, "s3cret")
	_, out, err = parseServeWith(env, "--frob")
	require.Error(t, err)
	require.Empty(t, out, "a mistake prints no usage")
	require.NotContains(t, err.Error(), "s3cret")
}

// flagNamed matches a flag as the flag package and egressd's messages name
// it: -name or --name.
var flagNamed = regexp.MustCompile(`(^|[\s"(:,])--?[a-z][a-z0-9-]*`)

// flagPackageErrors are the flag package's messages; each names the
// argument at fault, however it is spelled.
var flagPackageErrors = []string{"flag provided but not defined", "bad flag syntax", "flag needs an argument", "invalid value", "invalid boolean value", "invalid boolean flag"}

const (
	tokenCanary = "Tq7CanaryToken"
	dbCanary    = "Pw9CanaryDB"
)

// FuzzServeConfig feeds serve's configuration arbitrary arguments and
// environment: it never panics, every error names the flag or variable at
// fault, and neither the API token nor the database password is ever
// printed, in the error or in the usage text.
func FuzzServeConfig(f *testing.F) {
	f.Add("", "hubble:4245", "", "", "", "db")
	f.Add("--retention\x001h", "hubble:4245", "", "", "", "db")
	f.Add("--frob", "hubble:4245", "http://am:9093", "", "", "db")
	f.Add("-h", "hubble:4245", "", "", "", "db/egressd")
	f.Add("--max-keys=-1 --flush-interval=0s", "hubble:4245", "", "", "", "db")
	f.Add("--alertmanager-url\x00http://a:1,http://a:1", "x", "", "http://p:9090", "", "db")
	f.Add("--prometheus-url=prom:9090 --volume-history=1m", "x", "", "", strings.Repeat("k", 40), "db")
	f.Add("--unbounded-apps a/b,c extra", "x", "ftp://am", "", "short", "h@db")
	f.Add("--hubble-tls-cert=c --log-format=xml", "", "", "", "tok en", "db:5432")
	f.Add("--external-url=:: --dns-tunnel-names=-5", "x", "http://am:9093", "", "", "db")
	f.Add("-- --listen", "x", "", "https://u:p@prom:9090", "", "db")
	f.Fuzz(func(t *testing.T, argStr, hubble, am, prom, token, dbHost string) {
		sep := " "
		if strings.Contains(argStr, "\x00") {
			sep = "\x00"
		}
		var args []string
		if argStr != "" {
			args = strings.Split(argStr, sep)
		}
		// parseServe reads no file: --baseline-dir and the TLS files are
		// only recorded, so fuzzed paths touch nothing.
		// The secrets carry canaries; an argument that spells one is
		// lowercased, so a canary found in the output can only come from
		// a secret.
		argStr, hubble, am, prom, dbHost = noCanary(argStr), noCanary(hubble), noCanary(am), noCanary(prom), noCanary(dbHost)
		env := map[string]string{
			"HUBBLE_ADDRESS":    hubble,
			"ALERTMANAGER_URL":  am,
			"PROMETHEUS_URL":    prom,
			"EGRESSD_API_TOKEN": tokenCanary + token + tokenCanary,
			"DATABASE_URL":      "postgres://egressd:" + dbCanary + "@" + dbHost,
		}
		if token == "" {
			env["EGRESSD_API_TOKEN"] = ""
		}
		s, out, err := parseServeWith(env, args...)
		for _, secret := range []string{tokenCanary, dbCanary} {
			require.NotContains(t, out, secret, "usage printed a secret")
			if err != nil {
				require.NotContains(t, err.Error(), secret, "error printed a secret")
			}
		}
		if err == nil {
			require.NotEmpty(t, s.config.Client.Address)
			require.NotNil(t, s.log)
			return
		}
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		msg := err.Error()
		for _, p := range flagPackageErrors {
			if strings.HasPrefix(msg, p) {
				return
			}
		}
		if strings.Contains(msg, "unexpected argument") || flagNamed.MatchString(msg) {
			return
		}
		for _, v := range serveEnvVars {
			if strings.Contains(msg, v) {
				return
			}
		}
		t.Fatalf("error names no flag or variable: %q (args %q)", msg, args)
	})
}

// TestServeChecksConfigurationBeforeTheDatabase: serve reports a
// configuration mistake without connecting anywhere, and only then needs
// the database.
func TestServeChecksConfigurationBeforeTheDatabase(t *testing.T) {
	t.Parallel()
	unreachable := map[string]string{"HUBBLE_ADDRESS": "hubble:4245", "DATABASE_URL": "postgres://egressd:s3cret-pw@127.0.0.1:1/egressd?connect_timeout=1"}
	r := run(t, unreachable, "serve", "--retention", "1h")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--retention 1h is shorter")
	r = run(t, map[string]string{"HUBBLE_ADDRESS": "hubble:4245"}, "serve")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "set --database-url or DATABASE_URL")
	r = run(t, unreachable, "serve", "--frob")
	require.Equal(t, 2, r.code)
	require.NotContains(t, r.stderr, "s3cret-pw")
}

// noCanary lowercases "Canary" wherever s spells it.
func noCanary(s string) string { return strings.ReplaceAll(s, "Canary", "canary") }

func TestParseServeSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		source  string
		perNode bool
	}{
		{"default: the service fills in hubble:ADDRESS", nil, nil, "", false},
		{"named", nil, []string{"--source", "relay-eu"}, "relay-eu", false},
		{"per node, from the node's name", map[string]string{"NODE_NAME": "k8s-node-2"}, []string{"--per-node"}, "node/k8s-node-2", true},
		{"per node, named", map[string]string{"NODE_NAME": "k8s-node-2"}, []string{"--per-node", "--source", "node-b"}, "node-b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"HUBBLE_ADDRESS": "unix:///var/run/cilium/hubble.sock"}
			for k, v := range tt.env {
				env[k] = v
			}
			s, _, err := parseServeWith(env, tt.args...)
			require.NoError(t, err)
			require.Equal(t, tt.source, s.config.Source)
			require.Equal(t, tt.perNode, s.config.PerNode)
		})
	}
}

package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/httpapi"
)

const serveUsage = `Usage: egressd serve --hubble-address ADDRESS [flags]

Reads Hubble flows live into PostgreSQL (migrating it first), learns each
app's destinations, raises novel-destination, volume and DNS-tunnel
anomalies, sends them to Alertmanager (--alertmanager-url) and serves the
HTTP API (/api/v1), /metrics, /healthz and /readyz on --listen. Mutating API
calls need the bearer token in $EGRESSD_API_TOKEN when it is set.

Example:
  egressd serve --hubble-address hubble-relay.kube-system:80 \
    --database-url postgres://egressd@db:5432/egressd \
    --alertmanager-url http://alertmanager.monitoring:9093

Flags:
`

// serveSettings is what `egressd serve` reads from its flags and
// environment, checked: everything but the open database.
type serveSettings struct {
	common *common
	log    *slog.Logger
	// config lacks only DB, which serve opens once the settings are valid.
	config ServeConfig
}

// parseServe reads and checks serve's flags and environment without
// touching the network or the database, so bad configuration fails fast and
// the whole of it can be fuzzed. Every error names the flag or environment
// variable at fault; none prints a secret.
func (c *CLI) parseServe(args []string) (serveSettings, error) {
	fs := flag.NewFlagSet("egressd serve", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	pf := addPipelineFlags(fs)
	co := collector.DefaultClientOptions()
	fs.StringVar(&co.Address, "hubble-address", c.Getenv("HUBBLE_ADDRESS"),
		"Hubble Relay host:port (hubble-relay.kube-system:80; :443 with TLS) or agent socket (unix:///var/run/cilium/hubble.sock); default $HUBBLE_ADDRESS")
	fs.BoolVar(&co.TLS, "hubble-tls", false, "use TLS to Hubble (implied by the other --hubble-tls-* flags)")
	fs.StringVar(&co.TLSCAFile, "hubble-tls-ca", "", "CA certificate file that signed Hubble's certificate")
	fs.StringVar(&co.TLSCertFile, "hubble-tls-cert", "", "client certificate file for mTLS")
	fs.StringVar(&co.TLSKeyFile, "hubble-tls-key", "", "client key file for mTLS")
	fs.StringVar(&co.TLSServerName, "hubble-tls-server-name", "", "name expected in Hubble's certificate (e.g. ui.hubble-relay.cilium.io)")
	durationVar(fs, &co.BackoffMax, "hubble-backoff-max", co.BackoffMax, "longest wait between reconnects")
	replicaID := fs.String("replica-id", c.Getenv("POD_NAME"),
		"this replica's name in its Hubble source's lease: a process restarted with the same name takes the lease back at once, where a new name waits for it to expire (15s); two running processes must never share one (default $POD_NAME, else the host name and a random suffix)")
	source := fs.String("source", "",
		"this collector's Hubble source in its lease and cursor (default \"hubble:\" and --hubble-address; with --per-node, node/$NODE_NAME)")
	perNode := fs.Bool("per-node", false,
		"one collector per node: this one reads its node's agent socket and shares the database with the others; novelty and learning are judged for the whole cluster, and the volume rule needs --prometheus-url (docs/pernode.md)")
	listen := fs.String("listen", ":9090", "HTTP address of the API (/api/v1), /metrics, /healthz and /readyz")
	retention := durationFlag(fs, "retention", 30*24*time.Hour, "how long hourly buckets are kept (at least the baseline window); 0 keeps everything")
	df := addDetectFlags(fs)
	ao := alerts.DefaultOptions()
	amURLs := fs.String("alertmanager-url", c.Getenv("ALERTMANAGER_URL"), "comma-separated Alertmanager base URLs; every one gets every alert (default $ALERTMANAGER_URL)")
	fs.StringVar(&ao.ExternalURL, "external-url", "", "egressd's URL as operators reach it, for links in alerts")
	durationVar(fs, &ao.ResendInterval, "alert-resend-interval", ao.ResendInterval, "how often firing alerts are sent again")
	alertTTL := durationFlag(fs, "alert-ttl", 24*time.Hour, "a novel-destination alert nobody accepted resolves after this")
	po := detector.DefaultPrometheusOptions()
	fs.StringVar(&po.URL, "prometheus-url", c.Getenv("PROMETHEUS_URL"), "Prometheus with cAdvisor metrics, for the volume rule (default $PROMETHEUS_URL; without it: Hubble flow rate)")
	redactDefaults(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveUsage); printFlags(fs) }

	var s serveSettings
	rest, err := parseArgs(fs, args)
	if err != nil {
		return s, err
	}
	if len(rest) > 0 {
		return s, usageError("serve: unexpected argument %q", rest[0])
	}
	if co.Address == "" {
		return s, usageError("serve: --hubble-address is required (e.g. hubble-relay.kube-system:80)")
	}
	if co.BackoffMax > 0 && co.BackoffMax < co.BackoffMin {
		// --hubble-backoff-max below the first wait (1s) asks for quicker
		// reconnects: every wait is then the maximum.
		co.BackoffMin = co.BackoffMax
	}
	if err := co.Validate(); err != nil {
		return s, flagError(err, map[string]string{
			"ClientOptions.BackoffMax": "hubble-backoff-max",
		})
	}
	if *retention != 0 && *retention < 168*time.Hour {
		return s, usageError("serve: --retention %s is shorter than the default baseline window (7d): exports would lose destinations", formatDuration(*retention))
	}
	log, err := c.logger(cm)
	if err != nil {
		return s, err
	}
	opts, aggOpts, err := pf.options()
	if err != nil {
		return s, flagError(err, map[string]string{
			"Options.AppPrecedence":           "app-precedence",
			"Options.DNSMinTTL":               "dns-min-ttl",
			"Options.ClusterDomains":          "cluster-domains",
			"AggregatorOptions.FlushInterval": "flush-interval",
			"AggregatorOptions.MaxKeys":       "max-keys",
		})
	}
	detOpts, err := df.options(po.URL != "")
	if err != nil {
		return s, flagError(err, map[string]string{
			"Options.LearningPeriod":      "learning-period",
			"Options.FloodThreshold":      "flood-threshold",
			"Options.DNSFloodThreshold":   "dns-flood-threshold",
			"Options.DNSTunnelNames":      "dns-tunnel-names",
			"Options.FloodWindow":         "flood-window",
			"VolumeOptions.Factor":        "volume-factor",
			"VolumeOptions.Floor":         "volume-floor",
			"VolumeOptions.Hold":          "volume-hold",
			"VolumeOptions.HistoryWindow": "volume-history",
		})
	}
	ao.Targets = splitList(*amURLs)
	if len(ao.Targets) > 0 {
		if err := ao.Validate(); err != nil {
			return s, flagError(err, map[string]string{
				"Options.Targets":        "alertmanager-url",
				"Options.ExternalURL":    "external-url",
				"Options.ResendInterval": "alert-resend-interval",
			})
		}
	}
	if po.URL != "" {
		po.ShortWindow, po.HistoryWindow = detOpts.Volume.ShortWindow, detOpts.Volume.HistoryWindow
		if err := po.Validate(); err != nil {
			return s, flagError(err, map[string]string{
				"PrometheusOptions.URL":           "prometheus-url",
				"PrometheusOptions.HistoryWindow": "volume-history",
			})
		}
	}
	if *perNode && *source == "" {
		node := c.Getenv("NODE_NAME")
		if node == "" {
			return s, usageError("--per-node: set --source or $NODE_NAME (the node's name, from the downward API): every node's collector needs a source of its own")
		}
		*source = "node/" + node
	}
	if len(*source) > 256 || strings.ContainsFunc(*source, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s, usageError("--source: at most 256 characters, no control characters")
	}
	for _, reserved := range []string{"replay:", "singleton:"} {
		if strings.HasPrefix(*source, reserved) {
			return s, usageError("--source %q: the prefix %s is egressd's own (replay spans, per-node singletons); choose another name, such as node/NAME", *source, reserved)
		}
	}
	if len(*replicaID) > 256 || strings.ContainsFunc(*replicaID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s, usageError("--replica-id: at most 256 characters, no control characters")
	}
	token := httpapi.Token(c.Getenv("EGRESSD_API_TOKEN"))
	if token != "" {
		o := httpapi.DefaultOptions()
		o.Token = token
		if err := o.Validate(); err != nil {
			return s, usageError("EGRESSD_API_TOKEN: %v", err)
		}
	}
	s.common, s.log = cm, log
	s.config = ServeConfig{
		APIToken: token, ReplicaID: *replicaID, Source: *source, PerNode: *perNode,
		Client: co, Pipeline: opts, Aggregate: aggOpts, Listen: *listen, Retention: *retention,
		Detect: detOpts, Alerts: ao, BaselineDir: df.baselineDir, AlertTTL: *alertTTL, Prometheus: po,
	}
	return s, nil
}

// namesFlag matches a message that already names a flag ("--volume-floor"),
// not a value that happens to hold "--" (a URL such as "0--").
var namesFlag = regexp.MustCompile(`(^|[\s"(:,])--[a-z][a-z0-9-]*`)

// flagError returns err as a usage error that starts with the flag it is
// about: the options' messages name their fields (Options.MaxKeys), which
// an operator typed as flags (--max-keys). fields maps a field, as the
// message names it, to its flag. A message that already names a flag, or
// names no known field, is kept as it is.
func flagError(err error, fields map[string]string) error {
	msg := err.Error()
	if namesFlag.MatchString(msg) {
		return usageError("%s", msg)
	}
	for field, name := range fields {
		if strings.Contains(msg, field) {
			return usageError("--%s: %s", name, msg)
		}
	}
	return usageError("%s", msg)
}

// redactDefaults hides passwords in flag defaults taken from the
// environment: the flag package prints defaults in its usage message, on
// -h and on every mistake, which would put $DATABASE_URL's password (or an
// Alertmanager's basic-auth password) on the terminal and in logs.
// (--database-url's default is redacted by commonFlags, for every command.)
func redactDefaults(fs *flag.FlagSet) {
	for _, name := range []string{"alertmanager-url", "prometheus-url", "hubble-address"} {
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		parts := strings.Split(f.DefValue, ",")
		for i, p := range parts {
			if strings.Contains(p, "@") {
				u, err := url.Parse(strings.TrimSpace(p))
				if err != nil || u.User == nil {
					// Not a URL with user info (unparsable, or "user:pass@host"
					// without a scheme): none of it is shown.
					parts[i] = "xxxxx"
					continue
				}
				parts[i] = u.Redacted()
			}
		}
		f.DefValue = strings.Join(parts, ",")
	}
}

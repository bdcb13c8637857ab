package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/postgres"
)

// Exit statuses. Scripts depend on them: `baseline diff` exits 1 on drift.
const (
	exitOK    = 0
	exitDrift = 1 // baseline diff found drift; replay had unreadable lines
	exitError = 2 // bad usage or a failure
)

const usage = `egressd learns where each Kubernetes app connects outside the cluster, from
Cilium Hubble flows, alerts through Alertmanager when an app reaches somewhere
new or sends far more than usual, and exports per-app baselines for GitOps.

Usage:
  egressd serve               read Hubble live (--hubble-address) into PostgreSQL, detect, alert
                              (--alertmanager-url); serve /api/v1, /metrics, /healthz, /readyz
  egressd migrate             apply database migrations
  egressd replay FILE...      ingest Hubble JSON lines (events.log, hubble observe -o jsonpb,
                              bare flows; gzip ok; - is stdin) through the same pipeline;
                              --detect prints each anomaly as one JSON object per line
  egressd baseline export --dir DIR [--window 7d] [--at RFC3339] [--prune]
  egressd baseline diff   --dir DIR [--window 7d] [--at RFC3339] [--prune]
                              exit 0: no drift, 1: drift, 2: error
  egressd baseline check  --dir DIR [--window 7d] [--at RFC3339] [--output text|json]
                              what the window would break under the files: exit 0 nothing, 1 some, 2 error
  egressd baseline policy --dir DIR [--out DIR]
                              CiliumNetworkPolicies (toFQDNs) from the baseline files
  egressd accept NAMESPACE/APP DESTINATION[:PORT]
                              accept a destination (it joins the app's baseline; its alert resolves)
  egressd demo                nine days of a home lab in seconds: learning, alerts, baselines;
                              --keep-running: then a live Hubble to try serve and accept on
  egressd version             version, commit and Go version (also: egressd --version)

Every command takes --database-url (default $DATABASE_URL, which the demo
ignores; baseline policy reads only files).
Durations are written 30s, 5m, 24h, 7d, 2w. Run 'egressd COMMAND --help' for
a command's flags.
`

// CLI runs one egressd command. Its streams and environment are fields so
// tests run commands in-process.
type CLI struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Run runs the command in args and returns the exit status.
func (c *CLI) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, usage)
		return exitError
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = c.serve(ctx, rest)
	case "migrate":
		err = c.migrate(ctx, rest)
	case "replay":
		err = c.replay(ctx, rest)
	case "baseline":
		err = c.baseline(ctx, rest)
	case "demo":
		err = c.demo(ctx, rest)
	case "accept":
		err = c.accept(ctx, rest)
	case "bench":
		// The harness links test infrastructure the server must not, so it
		// is its own binary; there is no 'egressd bench --help' to point to.
		err = egressd.Errorf(egressd.EINVALID, "bench is its own binary: run make bench, or go run ./cmd/egressd-bench --help")
	case "version", "--version", "-version", "-v":
		if len(rest) > 0 && cmd == "version" && rest[0] != "-h" && rest[0] != "--help" {
			err = usageError("version: unexpected argument %q", rest[0])
			break
		}
		fmt.Fprintln(c.Stdout, versionLine())
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && !strings.HasPrefix(rest[0], "-") {
			// egressd help serve == egressd serve --help
			return c.Run(ctx, append(append([]string{}, rest...), "--help"))
		}
		fmt.Fprint(c.Stdout, usage)
	default:
		fmt.Fprintf(c.Stderr, "egressd: unknown command %q\n%s\n", cmd, helpHint("egressd"))
		return exitError
	}
	var ex *exitError_
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ex):
		if ex.msg != "" {
			fmt.Fprintln(c.Stderr, "egressd:", ex.msg)
		}
		return ex.code
	case isUsageError(err):
		fmt.Fprintf(c.Stderr, "egressd: %v\n%s\n", err, helpHint(commandName(args)))
		return exitError
	default:
		fmt.Fprintln(c.Stderr, "egressd:", err)
		return exitError
	}
}

// commandName is the command args run, as its usage hint names it:
// "egressd serve", "egressd baseline export".
func commandName(args []string) string {
	name := "egressd " + args[0]
	if args[0] == "baseline" && len(args) > 1 && (args[1] == "export" || args[1] == "diff" || args[1] == "check" || args[1] == "policy") {
		name += " " + args[1]
	}
	return name
}

// exitError_ carries an exit status other than 2 out of a command.
type exitError_ struct {
	code int
	msg  string
}

func (e *exitError_) Error() string { return e.msg }

// usageError reports a command-line mistake: Run prints it with a hint
// to the command's --help. Its code is egressd.EINVALID.
func usageError(format string, args ...any) error {
	return &cliUsageError{err: egressd.Errorf(egressd.EINVALID, format, args...)}
}

// cliUsageError marks a mistake on the command line, as opposed to bad
// input in a file or a failure, which get no hint to --help.
type cliUsageError struct{ err error }

func (e *cliUsageError) Error() string { return e.err.Error() }
func (e *cliUsageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var u *cliUsageError
	return errors.As(err, &u)
}

// logLevels are the values of --log-level, the same for every command.
var logLevels = []string{"debug", "info", "warn", "error"}

// common holds the flags every command shares.
type common struct {
	databaseURL string
	logLevel    string
	logFormat   string
}

func (c *CLI) commonFlags(fs *flag.FlagSet) *common {
	// Usage goes to stdout (-h | less); parseArgs reports mistakes.
	fs.SetOutput(c.Stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nFlags:\n", fs.Name())
		printFlags(fs)
	}
	cm := &common{}
	fs.StringVar(&cm.databaseURL, "database-url", c.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	// The flag package prints defaults in its usage, on -h and on every
	// mistake: $DATABASE_URL's password must not be in it.
	fs.Lookup("database-url").DefValue = postgres.DSN(c.Getenv("DATABASE_URL")).String()
	choiceVar(fs, &cm.logLevel, "log-level", "info", logLevels, "log level: "+orList(logLevels))
	choiceVar(fs, &cm.logFormat, "log-format", "text", []string{"text", "json"}, "log format: text or json")
	return cm
}

func (c *CLI) logger(cm *common) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cm.logLevel)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", cm.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cm.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(c.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.Stderr, opts)), nil
	}
	return nil, usageError("--log-format %q: want text or json", cm.logFormat)
}

// openDB connects to the database named by --database-url, and migrates it
// when migrate is set.
func openDB(ctx context.Context, cm *common, migrate bool) (*postgres.DB, error) {
	opts := postgres.DefaultOptions()
	opts.URL = postgres.DSN(cm.databaseURL)
	if strings.TrimSpace(cm.databaseURL) == "" {
		return nil, usageError("no database: set --database-url or DATABASE_URL (e.g. postgres://egressd@localhost:5432/egressd)")
	}
	db, err := postgres.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	if migrate {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// pipelineFlags are the attribution settings of serve, replay and demo.
type pipelineFlags struct {
	cluster        string
	internalCIDRs  string
	clusterDomains string
	precedence     string
	dnsMinTTL      time.Duration
	flushInterval  time.Duration
	maxKeys        int
	maxKeysPerApp  int
	maxApps        int
	maxClockSkew   time.Duration
}

func addPipelineFlags(fs *flag.FlagSet) *pipelineFlags {
	d := collector.DefaultOptions()
	a := collector.DefaultAggregatorOptions()
	pf := &pipelineFlags{}
	fs.StringVar(&pf.cluster, "cluster", "default", "cluster name for flows that do not carry one")
	fs.StringVar(&pf.internalCIDRs, "internal-cidrs", strings.Join(collector.DefaultInternalCIDRs, ","),
		"comma-separated networks that are never internet egress (node, LAN, VPC, pod and service ranges)")
	fs.StringVar(&pf.clusterDomains, "cluster-domains", strings.Join(d.ClusterDomains, ","), "comma-separated DNS suffixes of in-cluster names")
	fs.StringVar(&pf.precedence, "app-precedence", strings.Join(d.AppPrecedence, ","),
		"where an app's name comes from, first match wins: workload, label:KEY, pod")
	durationVar(fs, &pf.dnsMinTTL, "dns-min-ttl", d.DNSMinTTL, "shortest time a DNS answer names its addresses")
	durationVar(fs, &pf.maxClockSkew, "max-clock-skew", d.MaxClockSkew,
		"how far ahead of this host's clock a flow's time may be; later flows, and flows before 2000, are rejected and counted (egressd_flows_rejected_total)")
	durationVar(fs, &pf.flushInterval, "flush-interval", a.FlushInterval, "how often aggregates are written to PostgreSQL")
	fs.IntVar(&pf.maxKeys, "max-keys", a.MaxKeys, "most distinct keys held between flushes; beyond, new keys are dropped and counted")
	fs.IntVar(&pf.maxKeysPerApp, "max-keys-per-app", a.MaxKeysPerApp, fmt.Sprintf(
		"most distinct destinations and DNS names one app gets in per hour (a DNS tunnel's names); past half of it, new names are sampled one in %d, and those not kept are counted", a.SampleOneIn))
	fs.IntVar(&pf.maxApps, "max-apps", d.MaxApps,
		"most apps kept (stored apps are always kept); past half of it, new apps are sampled one in 100, and observations of apps not kept are counted (egressd_collector_observations_apps_sampled_total)")
	return pf
}

func (pf *pipelineFlags) options() (collector.Options, collector.AggregatorOptions, error) {
	o := collector.DefaultOptions()
	o.Cluster = pf.cluster
	cidrs, err := collector.ParseCIDRs(pf.internalCIDRs)
	if err != nil {
		return o, collector.AggregatorOptions{}, usageError("--internal-cidrs: %v", err)
	}
	o.InternalCIDRs = cidrs
	if pf.internalCIDRs == "" {
		o.InternalCIDRs = []netip.Prefix{}
	}
	o.ClusterDomains = splitList(pf.clusterDomains)
	o.AppPrecedence = splitList(pf.precedence)
	o.DNSMinTTL = pf.dnsMinTTL
	o.MaxClockSkew = pf.maxClockSkew
	o.MaxApps = pf.maxApps
	if err := o.Validate(); err != nil {
		return o, collector.AggregatorOptions{}, usageError("%v", err)
	}
	a := collector.DefaultAggregatorOptions()
	a.FlushInterval = pf.flushInterval
	a.MaxKeys = pf.maxKeys
	a.MaxKeysPerApp = pf.maxKeysPerApp
	if a.MaxKeysPerApp <= 0 {
		// Named here: the field's name contains that of --max-keys.
		return o, a, usageError("--max-keys-per-app: must be > 0, got %d", a.MaxKeysPerApp)
	}
	if err := a.Validate(); err != nil {
		return o, a, usageError("%v", err)
	}
	return o, a, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

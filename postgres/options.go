package postgres

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configures a connection pool.
type Options struct {
	// URL is the database to connect to. It prints redacted.
	URL DSN
	// MaxConns bounds the pool. A collector uses one connection per flush,
	// lease renewals one more; the detector, the alert sender and baseline
	// exports take the rest.
	MaxConns int32
	// APIMaxConns bounds the separate pool of the HTTP API (DB.API), so
	// that no number of API requests can take the connections flushes and
	// lease renewals need. It only opens connections when the API is used.
	APIMaxConns int32
	// ConnectTimeout bounds each attempt to open a connection.
	ConnectTimeout time.Duration
	// ApplicationName is shown in pg_stat_activity.
	ApplicationName string
}

// DefaultOptions returns the options egressd starts from: URL from
// $DATABASE_URL, a pool of 8 connections and one of 3 for the HTTP API, a
// 10 s connect timeout.
func DefaultOptions() Options {
	return Options{
		URL:             DSN(os.Getenv("DATABASE_URL")),
		MaxConns:        8,
		APIMaxConns:     3,
		ConnectTimeout:  10 * time.Second,
		ApplicationName: "egressd",
	}
}

// Validate reports the first invalid option, naming the field and what to
// do about it.
func (o Options) Validate() error {
	_, err := o.poolConfig()
	return err
}

// poolConfig validates the options and converts them to pgx's.
func (o Options) poolConfig() (*pgxpool.Config, error) {
	if strings.TrimSpace(string(o.URL)) == "" {
		return nil, fmt.Errorf("postgres: Options.URL is empty: set --database-url or DATABASE_URL")
	}
	if o.MaxConns < 1 {
		return nil, fmt.Errorf("postgres: Options.MaxConns must be >= 1, got %d", o.MaxConns)
	}
	if o.APIMaxConns < 0 {
		return nil, fmt.Errorf("postgres: Options.APIMaxConns must be >= 0 (0 shares the main pool), got %d", o.APIMaxConns)
	}
	if o.ConnectTimeout < 0 {
		return nil, fmt.Errorf("postgres: Options.ConnectTimeout must be >= 0, got %s", o.ConnectTimeout)
	}
	cfg, err := pgxpool.ParseConfig(string(o.URL))
	if err != nil {
		// pgx's message starts with the connection string, redacted on a
		// best-effort basis; print ours instead and keep only the reason.
		reason := err.Error()
		if i := strings.Index(reason, "`: "); i >= 0 {
			reason = reason[i+3:]
		}
		return nil, fmt.Errorf("postgres: Options.URL %s is not a valid PostgreSQL connection string (%s): want postgres://USER:PASSWORD@HOST:PORT/DATABASE", o.URL, reason)
	}
	cfg.MaxConns = o.MaxConns
	if cfg.MinConns > cfg.MaxConns {
		cfg.MinConns = cfg.MaxConns
	}
	if o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	if o.ApplicationName != "" {
		if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
			cfg.ConnConfig.RuntimeParams["application_name"] = o.ApplicationName
		}
	}
	// Hourly buckets and day partitions are UTC; so is every time read back.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	return cfg, nil
}

package alerts

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Options configure a Sender and the alerts it builds.
type Options struct {
	// Targets are the base URLs of every Alertmanager replica, such as
	// http://alertmanager.monitoring:9093 or
	// https://user:password@am.example.com/alertmanager. Each gets every
	// alert (Alertmanager replicas deduplicate among themselves). Basic
	// auth credentials in a URL are sent, never printed.
	Targets []string
	// ResendInterval is how often a firing alert is posted again; its
	// endsAt is 4 x ResendInterval ahead, so Alertmanager keeps it firing
	// through three missed resends.
	ResendInterval time.Duration
	// Lease is how long a claimed delivery belongs to this Sender before
	// another replica may claim it. It must exceed Timeout: a delivery
	// whose lease ran out before it was posted is left to the next claim.
	Lease time.Duration
	// BatchSize is the most deliveries claimed per round, and so the most
	// alerts in one POST.
	BatchSize int
	// Timeout bounds one POST to one Alertmanager.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait before a failed delivery is
	// tried again: BackoffMin doubled per failed attempt, jittered, capped
	// at BackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ExternalURL is egressd's own URL as operators reach it. When set,
	// alerts link to ExternalURL/triage/anomalies/FINGERPRINT (annotation
	// link and generatorURL).
	ExternalURL string
	// PollInterval is how often the outbox is checked without a Wake: the
	// safety net for resends, retries and deliveries queued by another
	// replica.
	PollInterval time.Duration
	// MaxPending bounds the pending deliveries of the outbox, all targets
	// together, when the outbox is a Trimmer: while an Alertmanager is
	// unreachable for days, the oldest resolved deliveries, then the oldest
	// firing ones, are dropped past it and counted in
	// egressd_alerts_dropped_total{reason="outbox_full"}. 0 means no bound.
	MaxPending int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the documented defaults, without targets.
func DefaultOptions() Options {
	return Options{
		ResendInterval: time.Minute,
		Lease:          30 * time.Second,
		BatchSize:      64,
		Timeout:        5 * time.Second,
		BackoffMin:     time.Second,
		BackoffMax:     time.Minute,
		PollInterval:   time.Second,
		MaxPending:     100_000,
		Now:            time.Now,
	}
}

// Validate reports the first invalid field. Messages never show a URL's
// password.
func (o Options) Validate() error {
	if len(o.Targets) == 0 {
		return fmt.Errorf("alerts: Options.Targets is empty: want at least one Alertmanager URL such as http://alertmanager:9093")
	}
	seen := map[string]int{}
	for i, t := range o.Targets {
		u, err := parseHTTPURL(t)
		if err != nil {
			return fmt.Errorf("alerts: Options.Targets[%d] %s: %v", i, err.shown, err.msg)
		}
		key := targetKey(t)
		if j, ok := seen[key]; ok {
			return fmt.Errorf("alerts: Options.Targets[%d] %q: duplicates Options.Targets[%d]", i, u.Redacted(), j)
		}
		seen[key] = i
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("alerts: Options.Targets[%d] %q: want a base URL without query or fragment", i, u.Redacted())
		}
	}
	switch {
	case o.ResendInterval <= 0:
		return fmt.Errorf("alerts: Options.ResendInterval must be > 0")
	case o.Timeout <= 0:
		return fmt.Errorf("alerts: Options.Timeout must be > 0")
	case o.Lease <= o.Timeout:
		return fmt.Errorf("alerts: Options.Lease (%s) must be longer than Options.Timeout (%s)", o.Lease, o.Timeout)
	case o.BatchSize <= 0:
		return fmt.Errorf("alerts: Options.BatchSize must be > 0")
	case o.BackoffMin <= 0:
		return fmt.Errorf("alerts: Options.BackoffMin must be > 0")
	case o.BackoffMax < o.BackoffMin:
		return fmt.Errorf("alerts: Options.BackoffMax (%s) must be >= Options.BackoffMin (%s)", o.BackoffMax, o.BackoffMin)
	case o.PollInterval <= 0:
		return fmt.Errorf("alerts: Options.PollInterval must be > 0")
	case o.MaxPending < 0:
		return fmt.Errorf("alerts: Options.MaxPending must be >= 0 (0: no bound)")
	}
	if o.ExternalURL != "" {
		u, err := parseHTTPURL(o.ExternalURL)
		if err != nil {
			return fmt.Errorf("alerts: Options.ExternalURL %s: %v", err.shown, err.msg)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("alerts: Options.ExternalURL %q: want a base URL without credentials, query or fragment, such as https://egressd.example.com", u.Redacted())
		}
	}
	return nil
}

type urlError struct {
	shown string // the URL as it may be printed
	msg   string
}

// parseHTTPURL parses an absolute http or https URL. Its error never
// contains the password: url.Parse's own errors quote the whole input.
func parseHTTPURL(s string) (*url.URL, *urlError) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, &urlError{shown: "(not shown: it may hold a password)", msg: "not a URL: want an http or https URL such as http://alertmanager:9093"}
	}
	shown := fmt.Sprintf("%q", u.Redacted())
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, &urlError{shown: shown, msg: "want an http or https URL"}
	}
	if u.Host == "" {
		return nil, &urlError{shown: shown, msg: "want an http or https URL with a host"}
	}
	return u, nil
}

// targetKey is how a configured target and a delivery's Target are matched:
// the URL without its password and trailing slash. So the outbox may store
// targets with or without their password (better without: then the password
// lives only in egressd's configuration).
func targetKey(s string) string {
	return strings.TrimRight(redactTarget(s), "/")
}

// redactTarget returns a target URL fit for logs and outbox error messages.
func redactTarget(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

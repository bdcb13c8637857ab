// Package httpapi is egressd's HTTP surface, served by `egressd serve`: the
// operator API under /api/v1, /metrics for Prometheus, /healthz (the
// process is alive) and /readyz (its dependencies answer). It is a reader
// of what the pipeline stored and the one place operators change detection
// at run time (accepting a destination). Handlers reach storage only
// through the small interfaces declared here (AppReader, DestinationReader,
// AnomalyReader, AcceptStore, all implemented by *postgres.DB) and the
// detector through AppFlags; cmd/egressd wires them in New.
//
// # Routes
//
// Apps are named NAMESPACE/APP in paths, as in baseline files and alerts;
// an app that runs in several clusters is one path, and its answers carry
// each row's cluster. Times are RFC 3339 in UTC. A window is a Go duration
// (168h), greater than 0 and at most 2160h (90 days).
//
//	GET /api/v1/apps[?window=168h][&limit=100][&after=CURSOR]
//	    {"apps":[{"cluster","namespace","app","first_seen","last_seen",
//	    "destinations","firing_anomalies","learning","learning_until","unbounded"}],
//	    "next":"CURSOR"}
//	    A page of apps (see Pages), sorted by cluster, namespace and app. destinations counts
//	    the destinations (any verdict) last seen within the window, all of
//	    them without one. learning is true until first_seen plus the
//	    detector's learning period (Options.LearningPeriod), judged by the
//	    server's clock. unbounded comes from the detector (AppFlags).
//
//	GET /api/v1/apps/{namespace}/{app}/destinations[?window=168h][&cluster=C][&limit=100][&after=CURSOR]
//	    {"namespace","app","destinations":[{"cluster","destination","port",
//	    "protocol","first_seen","last_seen","flows","dropped_flows","verdicts",
//	    "example_pod","name_source"}],"next":"CURSOR"}
//	    A page of the app's destinations with lifetime totals, those last seen within
//	    the window when one is given, sorted by cluster, name, port and
//	    protocol. verdicts are Hubble's names (FORWARDED, DROPPED, ...);
//	    name_source is flow, dns or ip. 404 for an app never seen.
//
//	GET /api/v1/apps/{namespace}/{app}/baseline[?window=168h][&at=RFC3339]
//	    The app's baseline in the file format, byte for byte what
//	    `egressd baseline export --window W --at T` builds for the app from
//	    the window [at - window, at) (default: the last 168h) before merging
//	    with a committed file: no hand edits, "unbounded" false. An app
//	    without allowed traffic in the window gets an empty destination
//	    list. 404 for an app never seen.
//
//	GET /api/v1/anomalies[?state=firing|resolved|all][&app=NAMESPACE/APP[&cluster=C]]
//	    [&kind=novel_destination|novel_destination_flood|egress_volume|dns_tunnel][&limit=100][&after=CURSOR]
//	    {"anomalies":[...],"next":"CURSOR"}
//	    A page of anomalies, newest first (start time, then fingerprint),
//	    state all by default.
//
//	GET /api/v1/anomalies/{fingerprint}
//	    {"anomaly":{"fingerprint","kind","alertname","state","cluster",
//	    "namespace","app","destination","port","protocol","started_at",
//	    "resolved_at","pod","node","verdict","name_source","baseline_source",
//	    "summary","details","severity","evidence":{"other_apps",
//	    "other_clusters","domain_apps","domain","cluster_first_seen",
//	    "known_ports","siblings","app_first_seen","bare_ip","labels",
//	    "longest_label","entropy","port_class","dropped","pods","reasons",
//	    "incomplete"}}}
//	    One anomaly. (Alerts link to its triage page,
//	    /triage/anomalies/{fingerprint}, package triage.) Fields that do not apply (a volume anomaly's
//	    destination, a firing anomaly's resolved_at, evidence that does
//	    not hold) are left out; severity is critical, warning or info, and
//	    evidence.reasons the severity's rule and facts (the detector
//	    package's rule table).
//
//	POST /api/v1/apps/{namespace}/{app}/accepted
//	    body {"destination":"api.github.com","port":443,"protocol":"TCP","cluster":"","by":"alice"}
//	    Accepts a destination for the app: it is part of the app's baseline
//	    from then on, and the app's firing novel-destination alert for it
//	    resolves. destination is a DNS name or an IP address (patterns
//	    belong in baseline files); without port, every port (0); without
//	    protocol, TCP when a port is given, else ANY; without cluster, every
//	    cluster; by (default "api") is recorded. 201 {"accepted":{...}} when
//	    new, 200 when it was accepted already (by and time are updated).
//	    404 when egressd has never seen the app (in that cluster, when the
//	    body names one), so that a typo does not go unnoticed; "force": true
//	    accepts ahead of the app's first flow.
//
//	DELETE /api/v1/apps/{namespace}/{app}/accepted
//	    body {"destination":"api.github.com","port":443,"protocol":"TCP","cluster":""}
//	    Takes back the acceptance stored under that key (the same defaults
//	    as POST). 204; 404 when it was not accepted. Alerts it resolved stay
//	    resolved.
//
//	/triage/...
//	    The triage pages alerts link to (package triage, Backends.Pages):
//	    HTML, with their own sign-in, limits and errors; they count against
//	    the same per-client limit as /api requests.
//
// # Pages
//
// Every listing (apps, an app's destinations, anomalies) is answered a page
// at a time, so that no request reads or holds more than a page however
// many apps are stored: limit is 1 to 1000 (default 100). next is present
// when the page is full: pass it as after, with the same other parameters,
// for the next page; a page that is not full (possibly empty) ends the
// listing. Pages never skip or repeat a row, whatever is stored meanwhile
// (a row stored behind the cursor shows up in the next full listing). The
// cursor is opaque, and belongs to its route: another route's cursor, or
// anything else, is a 400 naming after. The baseline route is not a
// listing: it answers the whole file, bounded by the collector's names per
// app.
//
// # Authorization
//
// Reads are open to whoever reaches the listener (put egressd behind the
// cluster's network policy or an authenticating proxy). Mutations need
// "Authorization: Bearer TOKEN" with the token of Options.Token
// (EGRESSD_API_TOKEN), compared in constant time through SHA-256; the
// scheme is case-insensitive (RFC 9110, 11.1: "bearer" works too). 401
// otherwise, before anything in the request is validated; refusals are
// counted and logged at debug level only, since anyone can send them.
// Without a token mutations are disabled and answer 503. The token is
// never logged, and Options print it redacted.
//
// # Errors and limits
//
// Every error answers {"error":{"code":"...","message":"..."}}; the message
// says what to fix and names the parameter or field. Codes and statuses:
// invalid 400, unauthorized 401, not_found 404, method_not_allowed 405
// (with Allow), conflict 409, too_large 413, too_many_requests 429 (with
// Retry-After), disabled 503, timeout 504, internal 500 (a generic message;
// the error itself is logged once). Unknown or repeated query parameters,
// unknown body fields, and anything after the body's one JSON object are
// errors, not ignored. Bodies are at most Options.MaxBodyBytes (64 KiB);
// each request gets Options.RequestTimeout (10 s).
//
// HEAD is answered on every GET route as GET without the body, and OPTIONS
// on every route with 204 and the allowed methods in Allow (RFC 9110).
//
// # Keeping the API from starving the collector
//
// The API shares the process and the database with the collector, so it is
// bounded on every side: listings are paged (see Pages); the stores are
// wired to a small database pool of their own (cmd/egressd gives it
// postgres' DB.API), so flushes and lease renewals always find a
// connection; a client (remote IP address; IPv6 by /64) has at most
// Options.MaxClientRequests (4) /api requests in flight, one more is
// answered 429 with Retry-After; and NewServer cuts connections that send
// their header too slowly (10 s), their whole request too slowly (15 s),
// read their answer too slowly (30 s) or sit idle (60 s). Behind a proxy
// every request has the proxy's address: limit per client there.
//
// # Metrics
//
// egressd_httpapi_requests_total{method,route,code} and
// egressd_httpapi_request_duration_seconds{method,route}, where route is the
// chi route pattern ("/api/v1/apps/{namespace}/{app}/destinations"), never
// the request's path; egressd_httpapi_unauthorized_requests_total{reason}
// (no_token, wrong_token) and
// egressd_httpapi_client_limited_requests_total (429s).
package httpapi

// Package triage serves the pages an alert links to: server-rendered HTML
// (html/template, no JavaScript) that reads well on a phone, so that an
// operator woken by a notification can judge an anomaly and end its alert
// in a tap. It is mounted by the HTTP API under Prefix (/triage), reads
// storage through the small interfaces declared here (implemented by
// *postgres.DB), and changes state only through them: an acceptance, which
// the detector rereads, and a resolution, whose resolved delivery the alert
// sender posts to every Alertmanager.
//
// # Pages
//
//	GET  /triage/                   firing anomalies, highest severity first, then newest
//	GET  /triage/anomalies/{fp}     one anomaly: evidence and severity reason, the app's
//	                                baseline, recent flows to the destination, other apps
//	                                using it, and the actions; ?pattern=P previews what
//	                                accepting P would cover
//	POST /triage/anomalies/{fp}/accept          accept the destination exactly
//	POST /triage/anomalies/{fp}/accept-pattern  accept a toFQDNs pattern (form field pattern)
//	POST /triage/anomalies/{fp}/dismiss         resolve without accepting anything
//	GET  /triage/login, POST /triage/login, POST /triage/logout
//
// # Who may act
//
// Reads are open, as the API's are. Actions need a session: the login page
// takes the operator's name and the API token (EGRESSD_API_TOKEN, compared
// in constant time through SHA-256) and sets a cookie signed with a key
// derived from the token (gorilla/securecookie, HMAC-SHA256), holding the
// name and its expiry (Options.SessionTTL); HttpOnly, SameSite=Strict,
// Path=/triage, and Secure when egressd is reached over HTTPS. Changing the
// token ends every session. The name is recorded with each action
// (accepted_by, resolved_by): the token proves the right to act, the name
// says who did.
//
// Forms are protected against cross-site request forgery by
// net/http.CrossOriginProtection (Sec-Fetch-Site, else Origin against
// Host), on top of the SameSite=Strict cookie: a cross-origin POST is
// answered 403 whatever cookie it carries. Pages carry a
// Content-Security-Policy that allows no script at all.
//
// Everything shown comes from flows and is escaped by html/template;
// fingerprints in paths are validated before any lookup, and a pattern is
// checked (a Cilium toFQDNs matchPattern, at least a registrable domain
// after its last wildcard, covering the anomaly's destination) with a
// message that says what to change.
package triage

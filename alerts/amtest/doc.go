// Package amtest runs the real Prometheus Alertmanager binary for tests, in
// the way net/http/httptest runs an HTTP server, together with a webhook
// receiver that collects the notifications Alertmanager sends.
//
// [Start] finds the binary in PATH (Debian names it prometheus-alertmanager,
// upstream alertmanager; $ALERTMANAGER_BIN overrides both), writes a
// configuration that routes every alert to one webhook receiver with
// send_resolved and timings short enough for tests, and starts it on a free
// loopback port with its storage in a temporary directory and clustering
// (gossip) off. It returns once /-/ready answers. [Alertmanager.Stop] and
// [Alertmanager.Restart] (same port, same storage) let tests simulate an
// outage. Alertmanager keeps alerts in memory only, so a restarted one has
// none until clients send them again, as in production.
//
// A missing binary fails the test, never skips it: tests must not pass on a
// machine that could not run them. The message says what to install
// (apt-get install prometheus-alertmanager); scripts/test.sh does it.
//
// [Receiver] is an httptest server that decodes Alertmanager's webhook
// payloads (version 4). [Receiver.Wait] blocks until an alert matching a
// predicate arrives, or the context ends, without sleeping.
package amtest

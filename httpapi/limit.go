package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/egressd/egressd"
)

// clientLimiter counts the /api requests each client has in flight.
type clientLimiter struct {
	max      int
	mu       sync.Mutex
	inFlight map[netip.Prefix]int
}

func newClientLimiter(max int) *clientLimiter {
	return &clientLimiter{max: max, inFlight: map[netip.Prefix]int{}}
}

// acquire takes one of client's slots; false when it has none left.
func (l *clientLimiter) acquire(client netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[client] >= l.max {
		return false
	}
	l.inFlight[client]++
	return true
}

// release gives a slot back. A client without requests in flight has no
// entry, so the map holds at most the requests in flight.
func (l *clientLimiter) release(client netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[client] <= 1 {
		delete(l.inFlight, client)
		return
	}
	l.inFlight[client]--
}

// clientKey returns who a request counts against: its remote IPv4 address,
// or the /64 of its IPv6 address (one host usually holds a whole /64).
// X-Forwarded-For is not read: a client could write anything there.
func clientKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		// Not an IP (a unix socket's peer): one client.
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail for an IPv6 address
		return p
	}
	return netip.PrefixFrom(ip, 32)
}

// retryAfterSeconds is what a 429 asks the client to wait: about the time
// of a slow request.
const retryAfterSeconds = 1

// perClient answers 429 with Retry-After to a client that already has
// Options.MaxClientRequests API requests in flight, so that one client
// cannot take every database connection of the API from the others.
func (s *server) perClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := clientKey(r.RemoteAddr)
		if !s.clients.acquire(client) {
			s.metrics.ClientLimited.Inc()
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
			s.writeError(w, r, egressd.Errorf(codeTooManyRequests, "this client already has %d API requests in flight: wait for an answer before sending more (Retry-After)", s.opts.MaxClientRequests))
			return
		}
		defer s.clients.release(client)
		next.ServeHTTP(w, r)
	})
}

// methods are the methods a route can allow, in the order Allow lists them.
var methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete,
}

// allowed returns the methods the request's path allows: HEAD wherever GET
// is, and OPTIONS on every path that exists. None for an unknown path.
func (s *server) allowed(r *http.Request) []string {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	var allow []string
	for _, m := range methods {
		if s.root.Match(chi.NewRouteContext(), m, path) || m == http.MethodHead && len(allow) > 0 && allow[0] == http.MethodGet {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		allow = append(allow, http.MethodOptions)
	}
	return allow
}

// options answers OPTIONS: 204 with the methods the path allows in Allow
// (RFC 9110, 9.3.7), or 404 for a path that has no route. Routes register
// no OPTIONS handler of their own, so every path answers it the same way.
func (s *server) options(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		allow := s.allowed(r)
		if len(allow) == 0 {
			s.writeError(w, r, egressd.Errorf(egressd.ENOTFOUND, "no route %s: see docs/api.md for the /api/v1 routes", echo(r.URL.Path)))
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		w.WriteHeader(http.StatusNoContent)
	})
}

package httpapi

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/egressd/egressd"
)

// defaultBy is who an acceptance is recorded as when the body names nobody.
const defaultBy = "api"

// maxByLen bounds the "by" field.
const maxByLen = 253

// acceptBody is the body of POST .../accepted.
type acceptBody struct {
	acceptKey
	By string `json:"by"`
	// Force accepts for an app egressd has not seen (yet): without it, an
	// unknown app is a 404, so that a typo does not go unnoticed while the
	// real alert keeps firing.
	Force bool `json:"force"`
}

const acceptFields = `"destination" (required), "port", "protocol", "cluster", "by" and "force"`

// unacceptBody is the body of DELETE .../accepted: the key the acceptance
// was stored under.
type unacceptBody struct {
	acceptKey
}

// acceptKey is what names an acceptance, in both bodies.
type acceptKey struct {
	Destination string `json:"destination"`
	Port        int    `json:"port"`
	Protocol    string `json:"protocol"`
	// Cluster limits the acceptance to one cluster; empty accepts the
	// destination in every cluster.
	Cluster string `json:"cluster"`
}

const unacceptFields = `"destination" (required), "port", "protocol" and "cluster"`

// acceptedJSON is an acceptance as the API answers it.
type acceptedJSON struct {
	Cluster     string    `json:"cluster"`
	Namespace   string    `json:"namespace"`
	App         string    `json:"app"`
	Destination string    `json:"destination"`
	Port        uint16    `json:"port"`
	Protocol    string    `json:"protocol"`
	By          string    `json:"by"`
	AcceptedAt  time.Time `json:"accepted_at"`
}

// acceptedKey validates what a body says was accepted: the app of the path
// in the body's cluster, and the destination as egressd stores it.
//
// Without a port, every port (0) is meant; without a protocol, TCP when a
// port is given (as `egressd accept NAME:443` reads it), else ANY.
// Destinations are DNS names or IP addresses: patterns belong in baseline
// files, since the detector matches acceptances exactly.
func acceptedKey(app egressd.App, cluster, dest string, port int, proto string) (egressd.App, egressd.Destination, error) {
	app.Cluster = cluster
	if cluster != "" {
		if err := app.Validate(); err != nil {
			return app, egressd.Destination{}, egressd.Errorf(egressd.EINVALID, "cluster %q: want a cluster name (letters, digits, '-', '_' or '.', at most %d characters)", echo(cluster), egressd.MaxClusterLen)
		}
	}
	var d egressd.Destination
	switch ip, err := netip.ParseAddr(dest); {
	case dest == "":
		return app, d, egressd.Errorf(egressd.EINVALID, "destination is required: a DNS name such as api.github.com or an IP address")
	case err == nil && ip.Zone() == "":
		d.Name = ip.Unmap().String()
	default:
		name, ok := egressd.NormalizeName(dest)
		if !ok {
			return app, d, egressd.Errorf(egressd.EINVALID, "destination %q: want a DNS name such as api.github.com or an IP address (wildcard patterns belong in baseline files)", echo(dest))
		}
		d.Name = name
	}
	if port < 0 || port > 65535 {
		return app, d, egressd.Errorf(egressd.EINVALID, "port %d: want 1 to 65535, or 0 for every port", port)
	}
	d.Port = uint16(port)
	switch {
	case proto != "":
		p, ok := egressd.CanonicalProtocol(proto)
		if !ok {
			return app, d, egressd.Errorf(egressd.EINVALID, "protocol %q: want TCP, UDP, SCTP, ICMPv4, ICMPv6 or ANY", echo(proto))
		}
		d.Protocol = p
	case port != 0:
		d.Protocol = egressd.ProtoTCP
	default:
		d.Protocol = egressd.ProtoAny
	}
	return app, d, nil
}

// validBy reports whether by can be recorded: printable text of at most
// maxByLen bytes.
func validBy(by string) bool {
	return len(by) <= maxByLen && utf8.ValidString(by) &&
		strings.IndexFunc(by, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// readAcceptKey reads what accept and unaccept share: the app from the
// path, no query parameters, the strict body (into body, whose key is key),
// and the acceptance key it names.
func (s *server) readAcceptKey(r *http.Request, body any, key *acceptKey, fields string) (egressd.App, egressd.Destination, error) {
	app, err := appParam(r)
	if err != nil {
		return egressd.App{}, egressd.Destination{}, err
	}
	if _, err := parseQuery(r); err != nil {
		return egressd.App{}, egressd.Destination{}, err
	}
	if err := decodeBody(r.Body, s.opts.MaxBodyBytes, body, fields); err != nil {
		return egressd.App{}, egressd.Destination{}, err
	}
	return acceptedKey(app, key.Cluster, key.Destination, key.Port, key.Protocol)
}

// accept answers POST /api/v1/apps/{namespace}/{app}/accepted: 201 when the
// destination is newly accepted, 200 when it was already (who and when are
// updated), 404 when egressd has never seen the app (in the body's cluster,
// if it names one) unless the body says "force": true. Accepting resolves
// the app's firing novel-destination alert for it.
func (s *server) accept(w http.ResponseWriter, r *http.Request) {
	var body acceptBody
	app, dest, err := s.readAcceptKey(r, &body, &body.acceptKey, acceptFields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	by := body.By
	if by == "" {
		by = defaultBy
	}
	if !validBy(by) {
		s.writeError(w, r, egressd.Errorf(egressd.EINVALID, "by: want at most %d printable characters", maxByLen))
		return
	}
	if !body.Force {
		clusters, err := s.b.Apps.AppClusters(r.Context(), app.Namespace, app.Name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if len(clusters) == 0 || app.Cluster != "" && !slices.Contains(clusters, app.Cluster) {
			s.writeError(w, r, egressd.Errorf(egressd.ENOTFOUND,
				`unknown app %s; "force": true to accept ahead of its first flow`, echo(app.InCluster())))
			return
		}
	}
	// Whether it existed only chooses between 201 and 200; a concurrent
	// accept of the same key may make both callers see 201.
	existed, err := s.b.Accepted.IsAccepted(r.Context(), app, dest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// PostgreSQL keeps microseconds: answer the time as it is stored.
	acc := egressd.Accepted{App: app, Destination: dest, By: by, At: s.opts.Now().UTC().Truncate(time.Microsecond)}
	if err := s.b.Accepted.Accept(r.Context(), acc); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("destination_accepted", "app", app.String(), "cluster", app.Cluster, "destination", dest.String(), "by", by, "remote", r.RemoteAddr)
	if s.b.AcceptedChanged != nil {
		s.b.AcceptedChanged()
	}
	st := http.StatusCreated
	if existed {
		st = http.StatusOK
	}
	writeJSON(w, st, struct {
		Accepted acceptedJSON `json:"accepted"`
	}{acceptedJSON{
		Cluster: app.Cluster, Namespace: app.Namespace, App: app.Name,
		Destination: dest.Name, Port: dest.Port, Protocol: dest.Protocol,
		By: by, AcceptedAt: acc.At,
	}})
}

// unaccept answers DELETE /api/v1/apps/{namespace}/{app}/accepted: 204, or
// 404 when that destination was not accepted. Alerts the acceptance
// resolved stay resolved.
func (s *server) unaccept(w http.ResponseWriter, r *http.Request) {
	var body unacceptBody
	app, dest, err := s.readAcceptKey(r, &body, &body.acceptKey, unacceptFields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	found, err := s.b.Accepted.Unaccept(r.Context(), app, dest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !found {
		where := "every cluster"
		if app.Cluster != "" {
			where = "cluster " + app.Cluster
		}
		s.writeError(w, r, egressd.Errorf(egressd.ENOTFOUND, "%s was not accepted for %s in %s", dest, app, where))
		return
	}
	s.log.Info("destination_unaccepted", "app", app.String(), "cluster", app.Cluster, "destination", dest.String(), "remote", r.RemoteAddr)
	if s.b.AcceptedChanged != nil {
		s.b.AcceptedChanged()
	}
	w.WriteHeader(http.StatusNoContent)
}

package flowgen

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Remote is a host outside the cluster's pods: a server on the internet, a
// LAN address or the kube-apiserver.
type Remote struct {
	// Name is the DNS name clients ask for, without the trailing dot; ""
	// for an address that is never looked up.
	Name string
	// CNAMEs is the chain the resolver follows from Name to the addresses,
	// in order, each without the trailing dot.
	CNAMEs []string
	// IPs are the addresses the final name resolves to; a client connects
	// to one of those in the answer it got.
	IPs []netip.Addr
	// TTL is the TTL of the answer, in seconds.
	TTL uint32
	// Identity is how Cilium labels the addresses.
	Identity Identity
	// Spellings, when set, are the forms of the name that destination_names
	// carries, picked at random per connection ("API.Example.com."). Cilium
	// itself lower-cases names and strips the dot; other producers do not.
	// By default destination_names carries Name.
	Spellings []string
	// NXDomain makes lookups of Name fail with NXDOMAIN.
	NXDomain bool
}

// Identity is a Cilium security identity as Hubble reports it.
type Identity struct {
	ID     uint32
	Labels []string
}

// Identity numbers Hubble reports (pkg/identity/numericidentity.go in
// Cilium): reserved identities, and the first locally scoped one. Locally
// scoped identities (CIDR, FQDN, kube-apiserver outside the cluster) are
// allocated by each agent from MinLocalIdentity up.
const (
	IdentityHost      = 1
	IdentityWorld     = 2
	IdentityWorldIPv4 = 9
	IdentityWorldIPv6 = 10
	MinLocalIdentity  = 1 << 24
)

const (
	labelWorld         = "reserved:world"
	labelWorldIPv4     = "reserved:world-ipv4"
	labelHost          = "reserved:host"
	labelKubeAPIServer = "reserved:kube-apiserver"
	firstLocalIdentity = MinLocalIdentity + 1
)

// World returns identity 2, reserved:world: an address Cilium knows nothing
// about. Node and LAN addresses that Cilium does not recognise get it too.
func World() Identity { return Identity{ID: IdentityWorld, Labels: []string{labelWorld}} }

// WorldIPv4 returns identity 9, reserved:world-ipv4, which dual-stack
// clusters use for IPv4 world addresses.
func WorldIPv4() Identity {
	return Identity{ID: IdentityWorldIPv4, Labels: []string{labelWorldIPv4}}
}

// FQDNIdentity returns a locally scoped identity (>= 2^24) for addresses that
// a toFQDNs selector selects: fqdn:<name> plus the world label.
func FQDNIdentity(id uint32, name string, world Identity) Identity {
	return Identity{ID: id, Labels: sortedLabels(append([]string{"fqdn:" + name}, world.Labels...))}
}

// CIDRIdentity returns a locally scoped identity (>= 2^24) for addresses that
// a CIDR rule selects: cidr:<prefix> plus the world label.
func CIDRIdentity(id uint32, prefix netip.Prefix, world Identity) Identity {
	return Identity{ID: id, Labels: sortedLabels(append([]string{"cidr:" + prefix.String()}, world.Labels...))}
}

// KubeAPIServerIdentity returns a locally scoped identity for a kube-apiserver
// address outside the cluster (a VIP or a managed control plane): Cilium
// labels it reserved:kube-apiserver and reserved:world.
func KubeAPIServerIdentity(id uint32) Identity {
	return Identity{ID: id, Labels: []string{labelKubeAPIServer, labelWorld}}
}

func (r *Remote) validate() error {
	if r == nil {
		return errors.New("remote must not be nil")
	}
	if r.Name != "" && (strings.HasSuffix(r.Name, ".") || strings.ContainsAny(r.Name, " /")) {
		return fmt.Errorf("remote name %q must be a DNS name without the trailing dot", r.Name)
	}
	if r.NXDomain {
		if r.Name == "" {
			return errors.New("an NXDOMAIN remote needs a Name")
		}
		return nil
	}
	if len(r.IPs) == 0 {
		return fmt.Errorf("remote %q needs IPs", r.Name)
	}
	for _, ip := range r.IPs {
		if !ip.Is4() {
			return fmt.Errorf("remote %q: %s is not an IPv4 address", r.Name, ip)
		}
	}
	if r.Identity.ID == 0 || len(r.Identity.Labels) == 0 {
		return fmt.Errorf("remote %q needs an Identity with an ID and labels", r.Name)
	}
	return nil
}

// spelling returns the form of the name destination_names carries.
func (r *Remote) spelling(pick func(n int) int) string {
	if len(r.Spellings) == 0 {
		return r.Name
	}
	return r.Spellings[pick(len(r.Spellings))]
}

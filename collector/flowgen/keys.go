package flowgen

import (
	"strconv"
	"time"

	"github.com/egressd/egressd"
)

// KeySpace is n distinct (app, destination, port) keys shaped like a large
// cluster, for the benchmarks that measure what egressd holds per key:
// 100 destinations per app and 100 apps per namespace (10k apps in 100
// namespaces at 1M keys), ports 443 (70%), 80 (20%) and others. App,
// namespace and pod names are built by NewKeySpace, as the pipeline interns
// them; Observe allocates each key's destination name, since it is unique
// per key and production allocates it too.
type KeySpace struct {
	apps []egressd.App
	pods []string
	buf  []byte
}

// NewKeySpace returns the key space of n keys.
func NewKeySpace(n int) *KeySpace {
	ks := &KeySpace{}
	for i := range max(1, n/100) {
		name := "app-" + strconv.Itoa(i)
		ks.apps = append(ks.apps, egressd.App{Cluster: "prod", Namespace: "ns-" + strconv.Itoa(i/100), Name: name})
		ks.pods = append(ks.pods, name+"-7d9f8b6c5-x2k4p")
	}
	return ks
}

// Apps returns the apps the keys belong to.
func (ks *KeySpace) Apps() []egressd.App { return ks.apps }

// Observe fills o with a connection to key i at t. Keys of one app are
// spread over the space: apps interleave, as in real traffic.
func (ks *KeySpace) Observe(i int, t time.Time, o *egressd.Observation) {
	a := i % len(ks.apps)
	b := append(ks.buf[:0], "api-"...)
	s := strconv.Itoa(i)
	for range 6 - len(s) {
		b = append(b, '0')
	}
	b = append(b, s...)
	b = append(b, ".vendor-"...)
	b = strconv.AppendInt(b, int64(i%50), 10)
	b = append(b, ".example.com"...)
	ks.buf = b
	port := uint16(443)
	switch i % 10 {
	case 7, 8:
		port = 80
	case 9:
		port = uint16(8000 + i%1000)
	}
	*o = egressd.Observation{
		Time: t, Kind: egressd.KindConnect, App: ks.apps[a], Pod: ks.pods[a], Node: "node-1",
		Destination: egressd.Destination{Name: string(b), Port: port, Protocol: egressd.ProtoTCP},
		NameSource:  egressd.NameFromFlow, Verdict: egressd.VerdictForwarded, Source: "hubble",
	}
}

// Observations returns the observations of keys 0..n-1 at t.
func (ks *KeySpace) Observations(n int, t time.Time) []egressd.Observation {
	obs := make([]egressd.Observation, n)
	for i := range obs {
		ks.Observe(i, t, &obs[i])
	}
	return obs
}

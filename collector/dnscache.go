package collector

// dnsCache maps (namespace, pod, address) to the name the pod asked for when
// a DNS answer gave it that address, until the answer expires. The whole
// CNAME chain of an answer maps to the asked-for name: Hubble reports the
// query and the final addresses. Times are flow times in Unix nanoseconds, so
// a replay resolves names as the live stream would have.
type dnsCache struct {
	entries map[string]dnsEntry
	max     int
	metrics *Metrics
}

type dnsEntry struct {
	// key is the entry's own map key: an update stores under it, where
	// storing under string(key) would allocate a copy of the key for every
	// answer repeated while the entry lives.
	key     string
	name    string
	expires int64
}

func newDNSCache(max int, m *Metrics) *dnsCache {
	return &dnsCache{entries: make(map[string]dnsEntry), max: max, metrics: m}
}

// add records that the pod's answer for name gave the address in key. The
// newest answer for an address wins; the same name again extends its life.
func (c *dnsCache) add(key []byte, name string, expires int64, now int64) {
	if e, ok := c.entries[string(key)]; ok {
		if e.name == name {
			expires = max(expires, e.expires)
		}
		c.entries[e.key] = dnsEntry{key: e.key, name: name, expires: expires}
		return
	}
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	k := string(key)
	c.entries[k] = dnsEntry{key: k, name: name, expires: expires}
	c.metrics.DNSCache.Set(float64(len(c.entries)))
}

// evict removes expired entries and, when that frees less than a tenth of
// the cache, arbitrary live ones (counted): memory stays bounded whatever a
// pod resolves.
func (c *dnsCache) evict(now int64) {
	for k, e := range c.entries {
		if e.expires < now {
			delete(c.entries, k)
		}
	}
	target := c.max - c.max/10
	for k := range c.entries {
		if len(c.entries) <= target {
			break
		}
		delete(c.entries, k)
		c.metrics.DNSEvicted.Inc()
	}
}

func (c *dnsCache) lookup(key []byte, now int64) (string, bool) {
	e, ok := c.entries[string(key)]
	if !ok || e.expires < now {
		return "", false
	}
	return e.name, true
}

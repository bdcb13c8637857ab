package collector

// dnsCache maps (namespace, pod, address) to the name the pod asked for when
// a DNS answer gave it that address, until the answer expires. The whole
// CNAME chain of an answer maps to the asked-for name: Hubble reports the
// query and the final addresses. Times are flow times in Unix nanoseconds, so
// a replay resolves names as the live stream would have.
//
// One pod holds at most maxPerPod entries, so that a pod resolving
// addresses by the hundred thousand cannot push the other pods' answers
// out (their connections would then be named by address). A pod's entries
// are counted per generation: once the last of them has expired, the pod
// starts a new generation at 0 without looking for them, and the entries
// of older generations are dropped when found.
type dnsCache struct {
	entries   map[string]dnsEntry
	pods      map[string]*dnsPod
	max       int
	maxPerPod int
	metrics   *Metrics
}

type dnsEntry struct {
	// key is the entry's own map key: an update stores under it, where
	// storing under string(key) would allocate a copy of the key for every
	// answer repeated while the entry lives.
	key     string
	name    string
	expires int64
	pod     *dnsPod
	gen     uint32
}

// dnsPod counts a pod's entries of its current generation, and when the
// last of them expires.
type dnsPod struct {
	n       int
	gen     uint32
	expires int64
}

func newDNSCache(max, maxPerPod int, m *Metrics) *dnsCache {
	return &dnsCache{entries: make(map[string]dnsEntry), pods: make(map[string]*dnsPod), max: max, maxPerPod: maxPerPod, metrics: m}
}

// podOf returns the pod part of a key (namespace/pod/, before the 16
// bytes of the address).
func podOf(key []byte) []byte { return key[:len(key)-16] }

// add records that the pod's answer for name gave the address in key. The
// newest answer for an address wins; the same name again extends its life.
func (c *dnsCache) add(key []byte, name string, expires int64, now int64) {
	if e, ok := c.entries[string(key)]; ok && e.gen == e.pod.gen {
		if e.name == name {
			expires = max(expires, e.expires)
		}
		e.pod.expires = max(e.pod.expires, expires)
		c.entries[e.key] = dnsEntry{key: e.key, name: name, expires: expires, pod: e.pod, gen: e.gen}
		return
	}
	p := c.pods[string(podOf(key))]
	if p != nil && p.expires < now {
		// Every entry of the pod has expired: a new generation.
		p.n, p.gen = 0, p.gen+1
	}
	if p != nil && p.n >= c.maxPerPod {
		c.metrics.DNSPodFull.Inc()
		return
	}
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	if p == nil {
		p = &dnsPod{}
		c.pods[string(podOf(key))] = p
	}
	p.n++
	p.expires = max(p.expires, expires)
	k := string(key)
	c.entries[k] = dnsEntry{key: k, name: name, expires: expires, pod: p, gen: p.gen}
	c.metrics.DNSCache.Set(float64(len(c.entries)))
}

// evict removes expired entries and, when that frees less than a tenth of
// the cache, arbitrary live ones (counted): memory stays bounded whatever a
// pod resolves. Pods left without entries are forgotten.
func (c *dnsCache) evict(now int64) {
	for k, e := range c.entries {
		if e.expires < now || e.gen != e.pod.gen {
			c.remove(k, e)
		}
	}
	target := c.max - c.max/10
	for k, e := range c.entries {
		if len(c.entries) <= target {
			break
		}
		c.remove(k, e)
		c.metrics.DNSEvicted.Inc()
	}
	for k, p := range c.pods {
		if p.n == 0 {
			delete(c.pods, k)
		}
	}
}

func (c *dnsCache) remove(k string, e dnsEntry) {
	delete(c.entries, k)
	if e.gen == e.pod.gen {
		e.pod.n--
	}
}

func (c *dnsCache) lookup(key []byte, now int64) (string, bool) {
	e, ok := c.entries[string(key)]
	if !ok || e.expires < now || e.gen != e.pod.gen {
		return "", false
	}
	return e.name, true
}

package flowgen

import (
	"net/netip"
	"time"

	"github.com/egressd/egressd"
)

// HomeLabCluster is the cluster name of the HomeLab scenario.
const HomeLabCluster = "homelab"

// Locally scoped identities of the HomeLab scenario.
const (
	homeLabAPIServerIdentity = firstLocalIdentity + iota
	homeLabGitHubIdentity
	homeLabSkyhookIdentity
	homeLabWeatherIdentity
)

// homeLabRemotes are the remote hosts of the HomeLab scenario, made afresh
// for each scenario so that changing one scenario's remotes changes no other.
// The addresses are made up for the scenario, inside the ranges the real
// operators use.
type homeLabRemotes struct {
	githubAPI      *Remote
	githubRaw      *Remote
	skyhook        *Remote
	theTVDB        *Remote
	smtpRelay      *Remote
	openWeather    *Remote
	timeCloudflare *Remote
	cloudflareDoH  *Remote
	cloudflareEdge *Remote
	backblaze      *Remote
	exampleCom     *Remote
	nxName         *Remote
	debianMirror   *Remote
	apiServerVIP   *Remote
}

func newHomeLabRemotes() homeLabRemotes {
	return homeLabRemotes{
		githubAPI: &Remote{
			Name:     "api.github.com",
			IPs:      addrs("140.82.112.6", "140.82.113.6", "140.82.114.6"),
			TTL:      60,
			Identity: FQDNIdentity(homeLabGitHubIdentity, "api.github.com", World()),
		},
		githubRaw: &Remote{
			Name:     "raw.githubusercontent.com",
			IPs:      addrs("185.199.108.133", "185.199.109.133", "185.199.110.133", "185.199.111.133"),
			TTL:      60,
			Identity: World(),
		},
		skyhook: &Remote{
			Name:     "skyhook.sonarr.tv",
			IPs:      addrs("104.21.84.51", "104.21.90.17"),
			TTL:      300,
			Identity: CIDRIdentity(homeLabSkyhookIdentity, netip.MustParsePrefix("104.21.80.0/20"), World()),
		},
		theTVDB: &Remote{
			Name:     "api.thetvdb.com",
			CNAMEs:   []string{"thetvdb.b-cdn.net"},
			IPs:      addrs("169.150.236.104", "169.150.236.105"),
			TTL:      300,
			Identity: World(),
		},
		smtpRelay: &Remote{
			IPs:      addrs("203.0.113.50"),
			Identity: World(),
		},
		openWeather: &Remote{
			Name:     "api.openweathermap.org",
			IPs:      addrs("37.139.20.5", "146.185.152.17"),
			TTL:      600,
			Identity: FQDNIdentity(homeLabWeatherIdentity, "api.openweathermap.org", WorldIPv4()),
			// Odd spellings a normaliser must fold into one name.
			Spellings: []string{"api.openweathermap.org", "api.openweathermap.org", "api.openweathermap.org", "API.OpenWeatherMap.org", "api.openweathermap.org."},
		},
		timeCloudflare: &Remote{
			Name:     "time.cloudflare.com",
			IPs:      addrs("162.159.200.1", "162.159.200.123"),
			TTL:      300,
			Identity: World(),
		},
		cloudflareDoH: &Remote{
			IPs:      addrs("1.1.1.1"),
			Identity: World(),
		},
		cloudflareEdge: &Remote{
			IPs:      addrs("172.70.240.12", "172.71.148.90"),
			Identity: World(),
		},
		backblaze: &Remote{
			Name:      "s3.us-west-002.backblazeb2.com",
			IPs:       addrs("149.137.128.14", "149.137.133.50"),
			TTL:       60,
			Identity:  WorldIPv4(),
			Spellings: []string{"s3.us-west-002.backblazeb2.com", "s3.us-west-002.backblazeb2.com."},
		},
		exampleCom: &Remote{
			Name:     "example.com",
			IPs:      addrs("23.192.228.80", "23.215.0.136"),
			TTL:      300,
			Identity: World(),
		},
		nxName: &Remote{
			Name:     "this-name-does-not-exist.example.com",
			NXDomain: true,
		},
		debianMirror: &Remote{
			IPs:      addrs("151.101.2.132"),
			Identity: World(),
		},
		apiServerVIP: &Remote{
			IPs:      addrs("192.168.1.10"),
			Identity: KubeAPIServerIdentity(homeLabAPIServerIdentity),
		},
	}
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// nodeExporter is a node's address as Cilium mislabels it: identity 2.
func nodeExporter(ip string) *Remote {
	return &Remote{IPs: addrs(ip), Identity: World()}
}

func homeLabNode(i int, name, ip string, routines ...Routine) Node {
	labels := []string{
		"beta.kubernetes.io/arch=amd64",
		"beta.kubernetes.io/os=linux",
		"kubernetes.io/arch=amd64",
		"kubernetes.io/hostname=" + name,
		"kubernetes.io/os=linux",
		"node.kubernetes.io/instance-type=k3s",
	}
	if i == 0 {
		labels = append(labels, "node-role.kubernetes.io/control-plane=true", "node-role.kubernetes.io/master=true")
	}
	return Node{Name: name, IP: netip.MustParseAddr(ip), Labels: labels, Routines: routines}
}

// HomeLab returns the default scenario: the k3s home lab "homelab" with
// three nodes (k8s-node-1..3, 192.168.1.11-13, pods in 10.42.0.0/16,
// services in 10.43.0.0/16) and the apps of Truth, starting at start for d
// (a week when d is 0). Its seed is 1.
func HomeLab(start time.Time, d time.Duration) Scenario {
	if d == 0 {
		d = 7 * 24 * time.Hour
	}
	r := newHomeLabRemotes()
	return Scenario{
		Start:         start,
		Duration:      d,
		Seed:          1,
		Cluster:       HomeLabCluster,
		HubbleVersion: "1.19.1+gd0d0c879",
		PodCIDR:       netip.MustParsePrefix("10.42.0.0/16"),
		Nodes: []Node{
			homeLabNode(0, "k8s-node-1", "192.168.1.11"),
			// apt-get update against a Debian mirror, by address.
			homeLabNode(1, "k8s-node-2", "192.168.1.12", Routine{
				Every: 24 * time.Hour, At: 6*time.Hour + 25*time.Minute, Jitter: 30 * time.Minute,
				Do: []Action{Connect{To: r.debianMirror, Port: 80, Names: NoNames}},
			}),
			homeLabNode(2, "k8s-node-3", "192.168.1.13"),
		},
		DNS: DNS{
			ServiceIP:   netip.MustParseAddr("10.43.0.10"),
			Server:      "kube-system/coredns",
			Upstreams:   addrs("1.1.1.1", "9.9.9.9"),
			ForwardRate: 0.5,
			Domain:      "cluster.local",
			TTL:         5,
		},
		Workloads:      homeLabWorkloads(r),
		DuplicateRate:  0.01,
		LostEvents:     6,
		NodeReconnects: 2,
	}
}

func homeLabWorkloads(r homeLabRemotes) []Workload {
	return []Workload{
		{
			Namespace:      "kube-system",
			Name:           "coredns",
			Kind:           KindDeployment,
			Labels:         []string{"k8s-app=kube-dns"},
			ServiceAccount: "coredns",
			Pods:           []Pod{{"coredns-6799fbcd5-7xkqp", "k8s-node-1"}, {"coredns-6799fbcd5-m2v4n", "k8s-node-2"}},
			Service:        &Service{Name: "kube-dns", IP: netip.MustParseAddr("10.43.0.10"), Port: 53},
		},
		{
			Namespace:      "media",
			Name:           "recyclarr",
			Kind:           KindDeployment,
			Labels:         []string{"app.kubernetes.io/instance=recyclarr", "app.kubernetes.io/name=recyclarr"},
			ServiceAccount: "recyclarr",
			Pods:           []Pod{{"recyclarr-7d9f8b6c5d-q2w8n", "k8s-node-1"}},
			Policy:         "recyclarr-egress",
			Routines: []Routine{{
				Every: time.Hour, At: 5 * time.Minute, Jitter: 90 * time.Second,
				Do: []Action{
					Connect{To: r.githubAPI, Port: 443, Names: NamesInFlow},
					Connect{To: r.githubRaw, Port: 443, Names: NamesInDNSOnly},
					CallService{To: "media/sonarr", Lookup: true},
				},
			}},
		},
		{
			Namespace:      "media",
			Name:           "sonarr",
			Kind:           KindDeployment,
			Labels:         []string{"app.kubernetes.io/instance=sonarr", "app.kubernetes.io/name=sonarr"},
			ServiceAccount: "sonarr",
			Pods:           []Pod{{"sonarr-5f7c9d8b4-h6t9r", "k8s-node-2"}},
			Policy:         "sonarr-egress",
			Service:        &Service{Name: "sonarr", IP: netip.MustParseAddr("10.43.87.12"), Port: 8989},
			SearchDomains:  true,
			Routines: []Routine{
				{
					Every: 6 * time.Hour, At: time.Hour + 10*time.Minute, Jitter: 5 * time.Minute,
					Do: []Action{
						Connect{To: r.skyhook, Port: 443, Names: NamesInFlow},
						Connect{To: r.theTVDB, Port: 443, Names: NamesInDNSOnly},
					},
				},
				{
					// A notification to a hard-coded SMTP relay the
					// policy does not allow.
					Every: 24 * time.Hour, At: 12 * time.Hour, Jitter: 2 * time.Hour,
					Do: []Action{Connect{To: r.smtpRelay, Port: 25, Names: NoNames, Denied: true}},
				},
			},
		},
		{
			Namespace:      "monitoring",
			Name:           "prometheus",
			Kind:           KindStatefulSet,
			Labels:         []string{"app.kubernetes.io/instance=prometheus", "app.kubernetes.io/name=prometheus"},
			ServiceAccount: "prometheus",
			Pods:           []Pod{{"prometheus-0", "k8s-node-3"}},
			Policy:         "prometheus",
			Routines: []Routine{
				{
					Every: 15 * time.Minute, Jitter: 30 * time.Second,
					Do: []Action{
						Connect{To: nodeExporter("192.168.1.11"), Port: 9100, Names: NoNames, KeepAlive: true},
						Connect{To: nodeExporter("192.168.1.12"), Port: 9100, Names: NoNames, KeepAlive: true},
						Connect{To: nodeExporter("192.168.1.13"), Port: 9100, Names: NoNames, KeepAlive: true},
					},
				},
				{
					Every: 30 * time.Minute, At: 2 * time.Minute, Jitter: 30 * time.Second,
					Do: []Action{ProxiedHTTP{To: "media/sonarr", Port: 9707, Path: "/metrics"}},
				},
				{
					// Kubernetes service discovery re-opening its watch.
					Every: time.Hour, At: 17 * time.Minute, Jitter: 5 * time.Minute,
					Do: []Action{Connect{To: r.apiServerVIP, Port: 6443, Names: NoNames}},
				},
			},
		},
		{
			Namespace:      "home",
			Name:           "home-assistant",
			Kind:           KindDeployment,
			Labels:         []string{"app.kubernetes.io/instance=home-assistant", "app.kubernetes.io/name=home-assistant"},
			ServiceAccount: "home-assistant",
			Pods:           []Pod{{"home-assistant-5b6c7d8f9-abcde", "k8s-node-2"}},
			HideWorkloads:  true,
			Policy:         "home-assistant",
			DualStack:      true,
			Routines: []Routine{
				{
					Every: 30 * time.Minute, At: 11 * time.Minute, Jitter: time.Minute,
					Do: []Action{Connect{To: r.openWeather, Port: 443, Names: NamesInFlow}},
				},
				{
					Every: time.Hour, At: 7 * time.Minute, Jitter: 30 * time.Second,
					Do: []Action{Connect{To: r.timeCloudflare, Port: 123, Proto: "UDP", Names: NamesInDNSOnly}},
				},
				{
					// DNS-over-HTTPS to a hard-coded resolver.
					Every: 2 * time.Hour, At: 45 * time.Minute, Jitter: 10 * time.Minute,
					Do: []Action{Connect{To: r.cloudflareDoH, Port: 443, Names: NoNames}},
				},
				{
					// The companion app, through a Cloudflare tunnel
					// edge and a LoadBalancer service.
					Every: 2 * time.Hour, At: 80 * time.Minute, Jitter: time.Hour,
					Do: []Action{Inbound{From: r.cloudflareEdge, Port: 8123}},
				},
			},
		},
		{
			Namespace:      "backup",
			Name:           "restic-backup",
			Kind:           KindCronJob,
			ServiceAccount: "restic",
			HideWorkloads:  true,
			Policy:         "restic-backup",
			Routines: []Routine{{
				Every: 24 * time.Hour, At: 3 * time.Hour, Jitter: 20 * time.Second,
				Do: []Action{Connect{To: r.backblaze, Port: 443, Names: NamesInFlow, Count: 4, Over: 10 * time.Minute}},
			}},
		},
		{
			Namespace:      "default",
			Name:           "netcheck",
			Kind:           KindDaemonSet,
			Labels:         []string{"app=netcheck"},
			ServiceAccount: "default",
			Pods:           []Pod{{"netcheck-x8k2l", "k8s-node-3"}},
			Policy:         "netcheck",
			Routines: []Routine{
				{Every: 10 * time.Minute, Jitter: 20 * time.Second, Do: []Action{Lookup{Of: r.exampleCom}}},
				{Every: time.Hour, At: 3 * time.Minute, Jitter: 20 * time.Second, Do: []Action{Lookup{Of: r.nxName}}},
			},
		},
	}
}

// Expected is what a correct collector learns for one app of the HomeLab
// scenario.
type Expected struct {
	App egressd.App
	// Kind is the app's owner kind, or "host" for a node.
	Kind string
	// Learn is the app's baseline: every destination it connects to, sorted
	// by name, port and protocol. Empty for an app that must learn nothing.
	Learn []egressd.Destination
	// Denied are attempts the policy dropped: observed with verdict
	// DROPPED, never part of a baseline.
	Denied []egressd.Destination
	// Why says how the app and the names are found, and which traps the
	// app's traffic sets.
	Why string
}

// Truth is the ground truth of the HomeLab scenario, for any window of at
// least 24 hours: the destinations each app connects to, which a collector
// must learn exactly. Apps not listed learn nothing.
//
//	app                        kind         learn                                   name from
//	media/recyclarr            Deployment   api.github.com:443/TCP                  destination_names (fqdn: identity)
//	                                        raw.githubusercontent.com:443/TCP       DNS answer (TTL 60), identity 2
//	media/sonarr               Deployment   api.thetvdb.com:443/TCP                 DNS answer, CNAME chain
//	                                        skyhook.sonarr.tv:443/TCP               destination_names (cidr: identity)
//	                                        denied: 203.0.113.50:25/TCP             daily policy drop
//	monitoring/prometheus      StatefulSet  nothing                                 node IPs as world, L7 quirk, apiserver
//	home/home-assistant        Deployment   1.1.1.1:443/TCP                         no DNS answer: the address
//	                                        api.openweathermap.org:443/TCP          destination_names, odd spellings
//	                                        time.cloudflare.com:123/UDP             DNS answer
//	kube-system/coredns        Deployment   1.1.1.1:53/UDP, 9.9.9.9:53/UDP          no names
//	backup/restic-backup       CronJob      s3.us-west-002.backblazeb2.com:443/TCP  destination_names; app from pod name
//	default/netcheck           DaemonSet    nothing                                 DNS only
//	host/k8s-node-2            host         151.101.2.132:80/TCP                    node_name "homelab/k8s-node-2"
//
// Addresses in 192.168.0.0/16 (the LAN: nodes, kube-apiserver VIP), the pod
// CIDR 10.42.0.0/16 and the service CIDR 10.43.0.0/16 are never internet
// egress, whatever their identity.
var Truth = []Expected{
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "media", Name: "recyclarr"},
		Kind: KindDeployment,
		Learn: []egressd.Destination{
			{Name: "api.github.com", Port: 443, Protocol: egressd.ProtoTCP},
			{Name: "raw.githubusercontent.com", Port: 443, Protocol: egressd.ProtoTCP},
		},
		Why: "app from workloads[0].name. api.github.com is in destination_names (fqdn: identity); " +
			"raw.githubusercontent.com only in the DNS answer the pod got just before (TTL 60, identity 2). " +
			"Also calls media/sonarr in the cluster (a cluster.local DNS answer, pod IP).",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "media", Name: "sonarr"},
		Kind: KindDeployment,
		Learn: []egressd.Destination{
			{Name: "api.thetvdb.com", Port: 443, Protocol: egressd.ProtoTCP},
			{Name: "skyhook.sonarr.tv", Port: 443, Protocol: egressd.ProtoTCP},
		},
		Denied: []egressd.Destination{
			{Name: "203.0.113.50", Port: 25, Protocol: egressd.ProtoTCP},
		},
		Why: "skyhook.sonarr.tv is in destination_names (cidr: identity); api.thetvdb.com answers through " +
			"CNAME thetvdb.b-cdn.net and flows carry only the address. The resolver walks the search path " +
			"first (NXDOMAIN for cluster.local names). 203.0.113.50:25 is dropped by policy once a day.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "monitoring", Name: "prometheus"},
		Kind: KindStatefulSet,
		Why: "scrapes node exporters at 192.168.1.11-13:9100 labelled reserved:world (identity 2), replies " +
			"from world sources, L7 flows to a sonarr pod with identity 2 and pod metadata, and the " +
			"kube-apiserver VIP 192.168.1.10:6443 with identity 16777217 [reserved:kube-apiserver reserved:world]. " +
			"None of it leaves the cluster or the LAN.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "home", Name: "home-assistant"},
		Kind: KindDeployment,
		Learn: []egressd.Destination{
			{Name: "1.1.1.1", Port: 443, Protocol: egressd.ProtoTCP},
			{Name: "api.openweathermap.org", Port: 443, Protocol: egressd.ProtoTCP},
			{Name: "time.cloudflare.com", Port: 123, Protocol: egressd.ProtoUDP},
		},
		Why: "flows carry no workloads: app from label app.kubernetes.io/name. api.openweathermap.org is in " +
			"destination_names, sometimes as API.OpenWeatherMap.org or with a trailing dot; time.cloudflare.com " +
			"only in the DNS answer; 1.1.1.1:443 has no DNS answer (DNS-over-HTTPS). Inbound connections " +
			"from the internet send replies to world with is_reply true.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "kube-system", Name: "coredns"},
		Kind: KindDeployment,
		Learn: []egressd.Destination{
			{Name: "1.1.1.1", Port: 53, Protocol: egressd.ProtoUDP},
			{Name: "9.9.9.9", Port: 53, Protocol: egressd.ProtoUDP},
		},
		Why: "CoreDNS forwarding cache misses upstream; no DNS answers of its own, so addresses.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "backup", Name: "restic-backup"},
		Kind: KindCronJob,
		Learn: []egressd.Destination{
			{Name: "s3.us-west-002.backblazeb2.com", Port: 443, Protocol: egressd.ProtoTCP},
		},
		Why: "a new pod each night (restic-backup-<minutes>-<5>), a new identity each night, no workloads and " +
			"no app labels: app from the pod name without the Job suffixes. Name in destination_names, " +
			"sometimes with a trailing dot.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: "default", Name: "netcheck"},
		Kind: KindDaemonSet,
		Why:  "only DNS queries (example.com every 10 minutes, an NXDOMAIN name hourly): a name only queried is not a destination.",
	},
	{
		App:  egressd.App{Cluster: HomeLabCluster, Namespace: egressd.HostNamespace, Name: "k8s-node-2"},
		Kind: "host",
		Learn: []egressd.Destination{
			{Name: "151.101.2.132", Port: 80, Protocol: egressd.ProtoTCP},
		},
		Why: "host network: source identity 1 [reserved:host], no pod; the node comes from node_name, " +
			`which Cilium writes as "homelab/k8s-node-2".`,
	},
}

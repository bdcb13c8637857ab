package flowgen_test

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/egressd/egressd/collector/flowgen"
)

func ExampleTruth() {
	for _, e := range flowgen.Truth {
		fmt.Println(e.App, e.Learn)
	}
	// Output:
	// media/recyclarr [api.github.com:443/TCP raw.githubusercontent.com:443/TCP]
	// media/sonarr [api.thetvdb.com:443/TCP skyhook.sonarr.tv:443/TCP]
	// monitoring/prometheus []
	// home/home-assistant [1.1.1.1:443/TCP api.openweathermap.org:443/TCP time.cloudflare.com:123/UDP]
	// kube-system/coredns [1.1.1.1:53/UDP 9.9.9.9:53/UDP]
	// backup/restic-backup [s3.us-west-002.backblazeb2.com:443/TCP]
	// default/netcheck []
	// host/k8s-node-2 [151.101.2.132:80/TCP]
}

// A day of the home lab with one planted anomaly, written as
// `hubble observe -o jsonpb` would print it.
func ExampleScenario_Generate() {
	s := flowgen.HomeLab(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 24*time.Hour)
	s.Extra = append(s.Extra, flowgen.NovelName(
		s.Start.Add(20*time.Hour), "media/recyclarr", "exfil.example.net", netip.MustParseAddr("198.51.100.7"), 443))
	resps, err := s.Generate()
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.CreateTemp("", "homelab-*.jsonl")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := flowgen.WriteJSONLines(f, resps); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resps[0].GetFlow().GetNodeName())
	// Output: homelab/k8s-node-3
}

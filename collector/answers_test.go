package collector_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// answerSink is a captureSink that keeps DNS answers too.
type answerSink struct {
	captureSink
	answers []egressd.DNSAnswer
}

func (a *answerSink) ObserveAnswer(ans egressd.DNSAnswer) { a.answers = append(a.answers, ans) }

// TestDNSAnswersAcrossRestart: the answers a pipeline hands its answer
// sinks, loaded into a new pipeline, name the connection that follows them
// as the first pipeline would have; an expired one does not.
func TestDNSAnswersAcrossRestart(t *testing.T) {
	t.Parallel()
	first := &answerSink{}
	p, _ := newPipeline(t, first)
	handleAll(t, p, dnsAnswer(t0, "Raw.GitHubUserContent.com.", 60, "185.199.108.133", "185.199.109.133"))
	require.Len(t, first.answers, 2)
	a := first.answers[0]
	require.Equal(t, "media", a.Namespace)
	require.Equal(t, "recyclarr-7d9f8b6c5d-x2k9p", a.Pod)
	require.Equal(t, "raw.githubusercontent.com", a.Name)
	require.Equal(t, "185.199.108.133", a.Addr.String())
	opts := collector.DefaultOptions()
	require.Equal(t, t0.Add(opts.DNSMinTTL), a.Expires, "a TTL of 60 s counts as DNSMinTTL")

	// A new process: the connection 10 s later is named from the answer.
	second := &captureSink{}
	p, _ = newPipeline(t, second)
	p.LoadDNSAnswers(first.answers)
	handleAll(t, p, podFlow(t0.Add(10*time.Second), "185.199.109.133", 443), podFlow(t0.Add(opts.DNSMinTTL+time.Second), "185.199.108.133", 443))
	require.Len(t, second.obs, 2)
	require.Equal(t, "raw.githubusercontent.com", second.obs[0].Destination.Name)
	require.Equal(t, egressd.NameFromDNS, second.obs[0].NameSource)
	require.Equal(t, "185.199.108.133", second.obs[1].Destination.Name, "expired: the bare IP")
}

// TestDNSAnswersOfInvalidPodsAreNotKept: an answer to a pod whose name is
// not a valid pod name still names that pod's connections in memory, but
// is not handed on to be stored.
func TestDNSAnswersOfInvalidPodsAreNotKept(t *testing.T) {
	t.Parallel()
	sink := &answerSink{}
	p, _ := newPipeline(t, sink)
	f := dnsAnswer(t0, "example.com.", 60, "93.184.216.34")
	f.Destination.PodName = "web\x00../1"
	handleAll(t, p, f)
	require.Empty(t, sink.answers)
}

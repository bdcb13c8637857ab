package detector_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// clusterStore is a store shared by collectors of other nodes: it refuses
// (reports stored already) the anomalies of the destinations known, as
// postgres.DB.ClusterKnows would, and counts what it was asked.
type clusterStore struct {
	fakeStore
	mu    sync.Mutex
	known map[string]bool // destination names known to the cluster
	asked []string
}

func (s *clusterStore) judge(a egressd.Anomaly) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, a.Destination.Name)
	return s.known[a.Destination.Name]
}

func TestSharedJudgesNewAppsInTheStore(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	tests := []struct {
		name string
		// loaded: the app's first sight, as the store gave it (LoadApps);
		// zero when this detector only saw the app itself.
		loaded    time.Time
		known     map[string]bool
		wantAsked []string
		wantRaise []string
	}{
		{
			// Another node saw recyclarr two days ago: its learning is
			// over. The store says which destination it knows.
			name:      "first sight here, long past elsewhere: the store decides",
			known:     map[string]bool{"api.github.com": true},
			wantAsked: []string{"api.github.com", "evil.example"},
			wantRaise: []string{"evil.example"},
		},
		{
			name:      "first sight loaded from the store, learning: learnt here",
			loaded:    t0.Add(-time.Hour),
			wantAsked: nil,
			wantRaise: nil,
		},
		{
			name:      "first sight loaded, learning over: novel ones go to the store",
			loaded:    t0.Add(-2 * day),
			known:     map[string]bool{"api.github.com": true},
			wantAsked: []string{"api.github.com", "evil.example"},
			wantRaise: []string{"evil.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &clusterStore{known: tt.known}
			opts := detector.DefaultOptions()
			opts.Shared = true
			d := newDetector(t, opts, &sharedStore{st})
			if !tt.loaded.IsZero() {
				d.LoadApps(map[egressd.App]time.Time{recyclarr: tt.loaded})
			}
			for _, name := range []string{"api.github.com", "evil.example"} {
				d.Observe(conn(recyclarr, dst(name, 443), t0))
				drain(t, d)
				// Judged once: known or raised, it is not asked again.
				d.Observe(conn(recyclarr, dst(name, 443), t0.Add(time.Minute)))
				drain(t, d)
			}
			require.Equal(t, tt.wantAsked, st.asked)
			var got []string
			for _, a := range st.raised {
				got = append(got, a.Destination.Name)
			}
			require.Equal(t, tt.wantRaise, got)
		})
	}
}

// sharedStore is clusterStore as a detector.Store.
type sharedStore struct{ s *clusterStore }

func (w *sharedStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	if w.s.judge(a) {
		return false, nil
	}
	return w.s.fakeStore.Raise(ctx, a)
}

func (w *sharedStore) Resolve(ctx context.Context, fp string, at time.Time) error {
	return w.s.fakeStore.Resolve(ctx, fp, at)
}

package service_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/service"
)

// refreshDB is service.RefreshDB with function fields; nil ones return
// nothing.
type refreshDB struct {
	accepted func() ([]egressd.Accepted, error)
	expire   func(before, at time.Time) (int, error)
}

func (f *refreshDB) AcceptedAll(context.Context) ([]egressd.Accepted, error) {
	if f.accepted != nil {
		return f.accepted()
	}
	return nil, nil
}

func (f *refreshDB) OutboxDepth(context.Context) (map[string]int, error) { return nil, nil }

func (f *refreshDB) ExpireNovel(_ context.Context, before, at time.Time) (int, error) {
	if f.expire != nil {
		return f.expire(before, at)
	}
	return 0, nil
}

// judge records what the detector is told.
type judge struct {
	mu        sync.Mutex
	accepted  [][]egressd.Accepted
	baselines [][]egressd.Baseline
}

func (j *judge) SetAccepted(acc []egressd.Accepted) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.accepted = append(j.accepted, acc)
}

func (j *judge) SetBaselines(bs []egressd.Baseline) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.baselines = append(j.baselines, bs)
}

func (j *judge) counts() (int, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.accepted), len(j.baselines)
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "media"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "media", "recyclarr.json"), []byte(`{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "media",
  "app": "recyclarr",
  "unbounded": false,
  "destinations": [
    {"name": "api.github.com", "ports": ["443/TCP"]}
  ]
}
`), 0o644))
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	acc := []egressd.Accepted{{App: egressd.App{Namespace: "media", Name: "recyclarr"}, Destination: egressd.Destination{Name: "example.com", Port: 443, Protocol: "TCP"}}}
	var expiredBefore time.Time
	woken := 0
	j := &judge{}
	r := service.NewRefresher()
	r.DB = &refreshDB{
		accepted: func() ([]egressd.Accepted, error) { return acc, nil },
		expire: func(before, at time.Time) (int, error) {
			require.Equal(t, now, at)
			expiredBefore = before
			return 2, nil
		},
	}
	r.Detector, r.BaselineDir, r.AlertTTL, r.Now = j, dir, 24*time.Hour, func() time.Time { return now }
	r.Wake = func() { woken++ }

	require.NoError(t, r.Refresh(context.Background()))
	require.Equal(t, [][]egressd.Accepted{acc}, j.accepted)
	require.Len(t, j.baselines, 1)
	require.Len(t, j.baselines[0], 1)
	require.Equal(t, "recyclarr", j.baselines[0][0].App)
	require.Equal(t, now.Add(-24*time.Hour), expiredBefore)
	require.Equal(t, 1, woken, "the sender is not woken for the resolved alerts")
}

func TestRefreshFailureNamesIt(t *testing.T) {
	t.Parallel()
	r := service.NewRefresher()
	r.DB = &refreshDB{accepted: func() ([]egressd.Accepted, error) { return nil, errors.New("database unreachable") }}
	r.Detector = &judge{}
	require.EqualError(t, r.Refresh(context.Background()), "database unreachable")
}

// TestRefresherTrigger: a Trigger refreshes at once, without waiting for
// the interval.
func TestRefresherTrigger(t *testing.T) {
	t.Parallel()
	j := &judge{}
	r := service.NewRefresher()
	r.DB, r.Detector, r.Interval, r.Log = &refreshDB{}, j, time.Hour, slog.New(slog.DiscardHandler)
	stop := run(r.Run)
	r.Trigger()
	eventually(t, "a triggered refresh", func() bool { n, _ := j.counts(); return n == 1 })
	require.NoError(t, stop())
}

// retentionDB records the cutoffs it is given; newest, when set, is the
// newest stored flow, and cutoffErr fails RetentionCutoff.
type retentionDB struct {
	mu        sync.Mutex
	newest    time.Time
	cutoffErr error
	dropped   []time.Time
	pruned    []time.Time
	cutoffs   int
}

func (f *retentionDB) RetentionCutoff(_ context.Context, now time.Time, period time.Duration) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutoffs++
	if f.cutoffErr != nil {
		return time.Time{}, f.cutoffErr
	}
	if f.newest.IsZero() {
		return now.Add(-period), nil
	}
	return f.newest.Add(-period), nil
}

func (f *retentionDB) DropBucketsBefore(_ context.Context, t time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, t)
	return 1, nil
}

func (f *retentionDB) Prune(_ context.Context, cutoff time.Time, _ *slog.Logger) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruned = append(f.pruned, cutoff)
}

func (f *retentionDB) rounds() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pruned)
}

// TestRetentionAtStartAndEveryInterval: the first round runs at once,
// with the cutoff Keep before now, for buckets and the rest alike.
func TestRetentionAtStartAndEveryInterval(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	db := &retentionDB{}
	r := &service.Retention{DB: db, Keep: 30 * 24 * time.Hour, Interval: 5 * time.Millisecond, Now: func() time.Time { return now }}
	stop := run(r.Run)
	eventually(t, "two rounds", func() bool { return db.rounds() >= 2 })
	require.NoError(t, stop())
	db.mu.Lock()
	defer db.mu.Unlock()
	want := now.Add(-30 * 24 * time.Hour)
	require.Equal(t, want, db.dropped[0])
	require.Equal(t, want, db.pruned[0])
}

// TestRetentionFromNewestFlow: the cutoff is Keep before the newest stored
// flow that the database names, not before now.
func TestRetentionFromNewestFlow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	newest := now.Add(-90 * 24 * time.Hour)
	db := &retentionDB{newest: newest}
	r := &service.Retention{DB: db, Keep: 30 * 24 * time.Hour, Interval: time.Hour, Now: func() time.Time { return now }}
	stop := run(r.Run)
	eventually(t, "a round", func() bool { return db.rounds() >= 1 })
	require.NoError(t, stop())
	db.mu.Lock()
	defer db.mu.Unlock()
	want := newest.Add(-30 * 24 * time.Hour)
	require.Equal(t, want, db.dropped[0])
	require.Equal(t, want, db.pruned[0])
}

// TestRetentionCutoffFailureDropsNothing: when the newest flow cannot be
// read, the round drops and prunes nothing, and the next round tries again.
func TestRetentionCutoffFailureDropsNothing(t *testing.T) {
	t.Parallel()
	db := &retentionDB{cutoffErr: errors.New("database unreachable")}
	r := &service.Retention{DB: db, Keep: time.Hour, Interval: 5 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	stop := run(r.Run)
	eventually(t, "two rounds", func() bool { db.mu.Lock(); defer db.mu.Unlock(); return db.cutoffs >= 2 })
	require.NoError(t, stop())
	db.mu.Lock()
	defer db.mu.Unlock()
	require.Empty(t, db.dropped)
	require.Empty(t, db.pruned)
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestWriteRollupMerge(t *testing.T) {
	t.Parallel()
	fwd := egressd.VerdictSet(0).Add(egressd.VerdictForwarded)
	drop := egressd.VerdictSet(0).Add(egressd.VerdictDropped)

	tests := []struct {
		name    string
		a, b    egressd.Rollup
		sources []string
		want    state
	}{
		{
			name: "counts add, times widen, verdicts OR",
			a: egressd.Rollup{Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
				App: recyclarr, Destination: github, FirstSeen: at(10 * time.Minute), LastSeen: at(20 * time.Minute),
				Flows: 5, DroppedFlows: 1, ExamplePod: "recyclarr-7d9f-abcde", NameSource: egressd.NameFromDNS,
			})}},
			b: egressd.Rollup{Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
				App: recyclarr, Destination: github, FirstSeen: at(5 * time.Minute), LastSeen: at(15 * time.Minute),
				Flows: 3, NameSource: egressd.NameFromFlow,
			})}},
			want: state{
				Apps: []postgres.AppSeen{{App: recyclarr, FirstSeen: at(5 * time.Minute), LastSeen: at(20 * time.Minute)}},
				Destinations: []egressd.DestinationRollup{{
					App: recyclarr, Destination: github, FirstSeen: at(5 * time.Minute), LastSeen: at(20 * time.Minute),
					Flows: 8, DroppedFlows: 1, Verdicts: fwd | drop, ExamplePod: "recyclarr-7d9f-abcde", NameSource: egressd.NameFromFlow,
				}},
			},
		},
		{
			name: "example pod from the flush seen last",
			a: egressd.Rollup{Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
				App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(10 * time.Minute), ExamplePod: "recyclarr-old",
			})}},
			b: egressd.Rollup{Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
				App: recyclarr, Destination: github, FirstSeen: at(20 * time.Minute), LastSeen: at(30 * time.Minute), ExamplePod: "recyclarr-new",
			})}},
			want: state{
				Apps: []postgres.AppSeen{{App: recyclarr, FirstSeen: at(0), LastSeen: at(30 * time.Minute)}},
				Destinations: []egressd.DestinationRollup{{
					App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(30 * time.Minute),
					Flows: 2, Verdicts: fwd, ExamplePod: "recyclarr-new",
				}},
			},
		},
		{
			name: "example pod tie goes to the smaller name, an empty pod never wins",
			a: egressd.Rollup{Destinations: []egressd.DestinationRollup{
				destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), ExamplePod: "recyclarr-b"}),
				destRollup(DestOpts{App: recyclarr, Destination: rawIP, FirstSeen: at(time.Hour), ExamplePod: ""}),
			}},
			b: egressd.Rollup{Destinations: []egressd.DestinationRollup{
				destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), ExamplePod: "recyclarr-a"}),
				destRollup(DestOpts{App: recyclarr, Destination: rawIP, FirstSeen: at(0), ExamplePod: "recyclarr-c", NameSource: egressd.NameIsIP}),
			}},
			want: state{
				Apps: []postgres.AppSeen{{App: recyclarr, FirstSeen: at(0), LastSeen: at(time.Hour)}},
				Destinations: []egressd.DestinationRollup{
					{App: recyclarr, Destination: rawIP, FirstSeen: at(0), LastSeen: at(time.Hour), Flows: 2, Verdicts: fwd, ExamplePod: "recyclarr-c", NameSource: egressd.NameIsIP},
					{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(0), Flows: 2, Verdicts: fwd, ExamplePod: "recyclarr-a"},
				},
			},
		},
		{
			name: "hourly buckets add per hour",
			a: egressd.Rollup{Hourly: []egressd.HourlyRollup{
				hourly(shop, github, at(0), 10, 0),
				hourly(shop, github, at(time.Hour), 5, 1),
			}},
			b: egressd.Rollup{Hourly: []egressd.HourlyRollup{
				hourly(shop, github, at(time.Hour+30*time.Minute), 7, 2), // truncated to the hour
				hourly(shop, github, at(2*time.Hour), 1, 1),
			}},
			want: state{
				// An app known only from hourly rows takes its hours as times.
				Apps: []postgres.AppSeen{{App: shop, FirstSeen: at(0), LastSeen: at(2 * time.Hour)}},
				Hourly: []egressd.HourlyRollup{
					hourly(shop, github, at(0), 10, 0),
					hourly(shop, github, at(time.Hour), 12, 3),
					hourly(shop, github, at(2*time.Hour), 1, 1),
				},
			},
		},
		{
			name: "dns queries and apps merge, duplicates within a rollup merge first",
			a: egressd.Rollup{
				DNSQueries: []egressd.DNSQueryRollup{
					{App: shop, Name: "api.stripe.com", FirstSeen: at(5 * time.Minute), LastSeen: at(6 * time.Minute), Queries: 2},
					{App: shop, Name: "api.stripe.com", FirstSeen: at(1 * time.Minute), LastSeen: at(2 * time.Minute), Queries: 1},
				},
				Destinations: []egressd.DestinationRollup{
					destRollup(DestOpts{App: shop, Destination: github, FirstSeen: at(3 * time.Minute), Flows: 4}),
					destRollup(DestOpts{App: shop, Destination: github, FirstSeen: at(4 * time.Minute), Flows: 6, DroppedFlows: 6}),
				},
			},
			b: egressd.Rollup{DNSQueries: []egressd.DNSQueryRollup{
				{App: shop, Name: "api.stripe.com", FirstSeen: at(10 * time.Minute), LastSeen: at(40 * time.Minute), Queries: 5},
				{App: recyclarr, Name: "api.github.com", FirstSeen: at(0), LastSeen: at(0), Queries: 1},
			}},
			want: state{
				Apps: []postgres.AppSeen{
					{App: recyclarr, FirstSeen: at(0), LastSeen: at(0)},
					{App: shop, FirstSeen: at(1 * time.Minute), LastSeen: at(40 * time.Minute)},
				},
				Destinations: []egressd.DestinationRollup{{
					App: shop, Destination: github, FirstSeen: at(3 * time.Minute), LastSeen: at(4 * time.Minute),
					Flows: 10, DroppedFlows: 6, Verdicts: fwd | drop,
				}},
				DNSQueries: []egressd.DNSQueryRollup{
					{App: recyclarr, Name: "api.github.com", FirstSeen: at(0), LastSeen: at(0), Queries: 1},
					{App: shop, Name: "api.stripe.com", FirstSeen: at(1 * time.Minute), LastSeen: at(40 * time.Minute), Queries: 8},
				},
			},
		},
		{
			name:    "cursors keep the newest time",
			a:       egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: at(time.Hour)}, {Source: "file", Time: at(0)}}},
			b:       egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: at(time.Minute)}, {Source: "relay", Time: at(2 * time.Minute)}}},
			sources: []string{"file", "relay", "never"},
			want: state{Cursors: []egressd.Cursor{
				{Source: "file", Time: at(0)},
				{Source: "relay", Time: at(time.Hour)},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			ab, ba := pgtest.NewDB(t), pgtest.NewDB(t)
			require.NoError(t, ab.WriteRollup(ctx, &tt.a))
			require.NoError(t, ab.WriteRollup(ctx, &tt.b))
			require.NoError(t, ba.WriteRollup(ctx, &tt.b))
			require.NoError(t, ba.WriteRollup(ctx, &tt.a))

			got := dump(t, ab, tt.sources...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("A then B (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(got, dump(t, ba, tt.sources...)); diff != "" {
				t.Errorf("B then A differs from A then B (-ab +ba):\n%s", diff)
			}
		})
	}
}

func TestWriteRollupEmpty(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	require.NoError(t, db.WriteRollup(t.Context(), nil))
	require.NoError(t, db.WriteRollup(t.Context(), &egressd.Rollup{}))
	require.Equal(t, state{}, dump(t, db))
}

func TestWriteRollupCancelled(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: t0}}})
	require.ErrorIs(t, err, context.Canceled)
}

// TestWriteRollupConcurrent runs writers that flush overlapping keys, in
// shuffled order, into hours of days with no partition yet: every flush
// must succeed (no deadlock, no partition-creation race) and the totals
// must be exact.
func TestWriteRollupConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	const (
		writers  = 4
		flushes  = 15
		apps     = 10
		destsPer = 20
		days     = 3
	)
	var keys []egressd.DestinationRollup
	for a := range apps {
		app := egressd.App{Namespace: "ns", Name: fmt.Sprintf("app-%02d", a)}
		for d := range destsPer {
			keys = append(keys, egressd.DestinationRollup{
				App:         app,
				Destination: egressd.Destination{Name: fmt.Sprintf("d%02d.example.com", d), Port: 443, Protocol: egressd.ProtoTCP},
			})
		}
	}
	rollup := func(w, f int, rnd *rand.Rand) *egressd.Rollup {
		r := &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: at(time.Duration(w*flushes+f) * time.Second)}}}
		for _, k := range keys {
			seen := at(time.Duration(f) * time.Minute)
			r.Destinations = append(r.Destinations, destRollup(DestOpts{
				App: k.App, Destination: k.Destination, FirstSeen: seen, Flows: 3, DroppedFlows: 1,
				ExamplePod: fmt.Sprintf("pod-%d", w),
			}))
			for d := range days {
				r.Hourly = append(r.Hourly, hourly(k.App, k.Destination, at(time.Duration(d)*24*time.Hour), 3, 1))
			}
			r.DNSQueries = append(r.DNSQueries, egressd.DNSQueryRollup{App: k.App, Name: k.Destination.Name, FirstSeen: seen, LastSeen: seen, Queries: 1})
		}
		rnd.Shuffle(len(r.Destinations), func(i, j int) { r.Destinations[i], r.Destinations[j] = r.Destinations[j], r.Destinations[i] })
		rnd.Shuffle(len(r.Hourly), func(i, j int) { r.Hourly[i], r.Hourly[j] = r.Hourly[j], r.Hourly[i] })
		rnd.Shuffle(len(r.DNSQueries), func(i, j int) { r.DNSQueries[i], r.DNSQueries[j] = r.DNSQueries[j], r.DNSQueries[i] })
		return r
	}

	errs := make(chan error, writers*flushes)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for f := range flushes {
				if err := db.WriteRollup(ctx, rollup(w, f, rnd)); err != nil {
					errs <- fmt.Errorf("writer %d flush %d: %w", w, f, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	const n = writers * flushes
	got := dump(t, db, "relay")
	require.Len(t, got.Destinations, apps*destsPer)
	for _, d := range got.Destinations {
		require.Equal(t, int64(3*n), d.Flows, "%s %s", d.App, d.Destination)
		require.Equal(t, int64(n), d.DroppedFlows, "%s %s", d.App, d.Destination)
		require.Equal(t, at(0), d.FirstSeen)
		require.Equal(t, at((flushes-1)*time.Minute), d.LastSeen)
	}
	require.Len(t, got.Hourly, apps*destsPer*days)
	for _, h := range got.Hourly {
		require.Equal(t, int64(3*n), h.Flows)
		require.Equal(t, int64(n), h.DroppedFlows)
	}
	require.Len(t, got.DNSQueries, apps*destsPer)
	for _, q := range got.DNSQueries {
		require.Equal(t, int64(n), q.Queries)
	}
	require.Equal(t, []egressd.Cursor{{Source: "relay", Time: at((n - 1) * time.Second)}}, got.Cursors)

	parts, err := db.HourlyPartitions(ctx)
	require.NoError(t, err)
	require.Len(t, parts, days)
}

func TestCursor(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	_, err := db.Cursor(ctx, "relay")
	require.True(t, errors.Is(err, egressd.ErrNotFound), "want ErrNotFound, got %v", err)
	require.Equal(t, egressd.ENOTFOUND, egressd.ErrorCode(err))

	for _, step := range []struct {
		write, want time.Time
	}{
		{write: at(time.Hour), want: at(time.Hour)},
		{write: at(0), want: at(time.Hour)}, // an older flush never moves it back
		{write: at(2 * time.Hour), want: at(2 * time.Hour)},
	} {
		require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: step.write}}}))
		got, err := db.Cursor(ctx, "relay")
		require.NoError(t, err)
		require.Equal(t, step.want, got)
	}
}

// TestCursorKeepsNanoseconds: flow times have nanoseconds; a cursor rounded to
// PostgreSQL's microseconds would make a restart count the last flows again.
func TestCursorKeepsNanoseconds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	at := time.Date(2026, 11, 1, 11, 41, 33, 88446480, time.UTC)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: at}}}))
	got, err := db.Cursor(ctx, "relay")
	require.NoError(t, err)
	require.Equal(t, at, got)
	_, err = db.Cursor(ctx, "other")
	require.ErrorIs(t, err, egressd.ErrNotFound)
}

// TestWriteRollupIsIdempotentByID: a collector whose commit landed but
// whose answer was lost retries the same rollup under the same ID; the
// aggregator does that (collector.Aggregator.Flush), and the retry, here
// driven by the real aggregator over a writer that loses the answer of
// commits that succeeded, changes nothing.
func TestWriteRollupIsIdempotentByID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)

	r := egressd.Rollup{
		ID: "3b1c0f0e5d2a4c6b8a9e7d5c3b1a0f0e",
		Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
			App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(time.Minute), Flows: 5,
		})},
		Cursors: []egressd.Cursor{{Source: "hubble", Time: at(time.Minute)}},
	}
	require.NoError(t, db.WriteRollup(ctx, &r))
	require.NoError(t, db.WriteRollup(ctx, &r), "a retry of a written rollup succeeds")
	total, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(5), total, "and writes nothing")

	other := r
	other.ID = "a different flush"
	require.NoError(t, db.WriteRollup(ctx, &other))
	total, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(10), total, "another ID is another flush")

	// Concurrent writes of one ID: exactly one counts.
	same := r
	same.ID = "concurrent"
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { require.NoError(t, db.WriteRollup(ctx, &same)) })
	}
	wg.Wait()
	total, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(15), total)
}

// lostAnswerWriter commits every rollup, and reports the first commits of
// odd calls as failed, as a connection that breaks after the commit but
// before its answer would.
type lostAnswerWriter struct {
	db    *postgres.DB
	calls int
}

func (w *lostAnswerWriter) WriteRollup(ctx context.Context, r *egressd.Rollup) error {
	w.calls++
	if err := w.db.WriteRollup(ctx, r); err != nil {
		return err
	}
	if w.calls%2 == 1 {
		return errors.New("write rollup: commit: unexpected EOF")
	}
	return nil
}

func TestAggregatorRetryAfterLostCommitAnswerCountsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	w := &lostAnswerWriter{db: db}
	opts := collector.DefaultAggregatorOptions()
	a, err := collector.NewAggregator(opts, w, slog.New(slog.DiscardHandler), collector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	want := int64(0)
	for round := range 6 {
		for i := range 50 {
			a.Observe(&egressd.Observation{
				Time: at(time.Duration(round*50+i) * time.Second), Kind: egressd.KindConnect, App: recyclarr,
				Destination: egressd.Destination{Name: fmt.Sprintf("n%d.example", i%7), Port: 443, Protocol: "TCP"},
				Verdict:     egressd.VerdictForwarded, NameSource: egressd.NameFromFlow,
			})
			want++
		}
		_ = a.Flush(ctx) // every other one reports an error after its commit
	}
	for a.Flush(ctx) != nil {
	}
	total, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, want, total, "a retried flush whose commit had landed is not counted twice")
	require.Greater(t, w.calls, 6)
}

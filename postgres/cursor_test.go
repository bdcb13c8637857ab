package postgres_test

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestCursorsWithPrefix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{
		{Source: "hubble:relay:80", Time: at(0)},
		{Source: "replay:node-1@1", Time: at(time.Hour)},
		{Source: "replay:node-2@2", Time: at(2 * time.Hour)},
		{Source: "replay_x", Time: at(3 * time.Hour)},
		{Source: "replay%:like", Time: at(4 * time.Hour)},
	}}))
	got, err := db.CursorsWithPrefix(ctx, "replay:")
	require.NoError(t, err)
	require.Equal(t, []egressd.Cursor{
		{Source: "replay:node-1@1", Time: at(time.Hour)},
		{Source: "replay:node-2@2", Time: at(2 * time.Hour)},
	}, got)
	got, err = db.CursorsWithPrefix(ctx, "replay%")
	require.NoError(t, err)
	require.Equal(t, []egressd.Cursor{{Source: "replay%:like", Time: at(4 * time.Hour)}}, got, "the prefix is not a LIKE pattern")
}

func TestResumeCursorRepairsAFutureCursor(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	year2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	// What an older version stored from one flow stamped 2100 among real
	// ones: the destination's last_seen and the cursor went to 2100.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(time.Hour)}),
			destRollup(DestOpts{App: recyclarr, Destination: blocked, FirstSeen: year2100}),
		},
		DNSQueries: []egressd.DNSQueryRollup{{App: recyclarr, Name: "dns.google", FirstSeen: at(0), LastSeen: at(90 * time.Minute), Queries: 1}},
		Cursors:    []egressd.Cursor{{Source: "hubble:a", Time: year2100}, {Source: "hubble:b", Time: at(time.Hour)}},
	}))
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	bound := at(24 * time.Hour)

	// A cursor in the past is returned as it is, and nothing is logged.
	cur, err := db.ResumeCursor(ctx, "hubble:b", bound, logger)
	require.NoError(t, err)
	require.Equal(t, at(time.Hour), cur)
	require.Empty(t, log.String())

	// A cursor in the future is set back to the newest stored flow that
	// is not: the DNS question's.
	cur, err = db.ResumeCursor(ctx, "hubble:a", bound, logger)
	require.NoError(t, err)
	require.Equal(t, at(90*time.Minute), cur)
	require.Contains(t, log.String(), "cursor_in_future_repaired")
	require.Contains(t, log.String(), "source=hubble:a")
	stored, err := db.Cursor(ctx, "hubble:a")
	require.NoError(t, err)
	require.Equal(t, at(90*time.Minute), stored, "the repair is stored")

	// A missing cursor is still not found.
	_, err = db.ResumeCursor(ctx, "hubble:none", bound, logger)
	require.Equal(t, egressd.ENOTFOUND, egressd.ErrorCode(err))
}

func TestResumeCursorWithNothingStoredBeforeIt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Cursors: []egressd.Cursor{{Source: "hubble:a", Time: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}))
	var log bytes.Buffer
	_, err := db.ResumeCursor(ctx, "hubble:a", at(0), slog.New(slog.NewTextHandler(&log, nil)))
	require.Equal(t, egressd.ENOTFOUND, egressd.ErrorCode(err), "resume from now")
	require.Contains(t, log.String(), "resume_from=now")
	_, err = db.Cursor(ctx, "hubble:a")
	require.Equal(t, egressd.ENOTFOUND, egressd.ErrorCode(err), "the poisoned cursor is gone")
}

func TestRetentionCutoffFollowsTheData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	now := at(400 * 24 * time.Hour)
	period := 30 * 24 * time.Hour

	cutoff, err := db.RetentionCutoff(ctx, now, period)
	require.NoError(t, err)
	require.Equal(t, now.Add(-period), cutoff, "nothing stored: measured from now")

	// An old capture: retention is measured from its newest flow.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(10 * time.Hour)}),
	}}))
	cutoff, err = db.RetentionCutoff(ctx, now, period)
	require.NoError(t, err)
	require.Equal(t, at(10*time.Hour).Add(-period), cutoff)

	// A flow stamped in the future is not the newest flow.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: shop, Destination: github, FirstSeen: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}),
	}}))
	cutoff, err = db.RetentionCutoff(ctx, now, period)
	require.NoError(t, err)
	require.Equal(t, at(10*time.Hour).Add(-period), cutoff)

	// Newer flows move it.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: now.Add(-time.Minute)}),
	}}))
	cutoff, err = db.RetentionCutoff(ctx, now, period)
	require.NoError(t, err)
	require.Equal(t, now.Add(-time.Minute).Add(-period), cutoff)
}

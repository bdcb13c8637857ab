package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"golang.org/x/sync/errgroup"

	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// The replays that several tests start from run once per test binary, into
// a pgtest.Snapshot that each test copies: a replay of a week costs tens of
// seconds under the race detector, a copy of its database a fraction of one.
// The captures they replay are generated and written once too.

// restartFlows is restartScenario generated and written once: the
// learning week, and the two days after it with the planted anomalies.
var restartFlows = sync.OnceValues(func() (*scenarioFlows, error) {
	resps, err := restartScenario().Generate()
	if err != nil {
		return nil, err
	}
	week := takeUntil(&resps, detectStart.Add(7*24*time.Hour))
	f := &scenarioFlows{days: resps}
	// The week and the days are written at once: seconds each under the
	// race detector, before the first snapshot can start.
	var g errgroup.Group
	g.Go(func() error {
		var b bytes.Buffer
		err := flowgen.WriteJSONLines(&b, week)
		f.weekLines = b.Bytes()
		return err
	})
	g.Go(func() error {
		// One line per response: the offsets cut the days as takeUntil
		// cuts the responses.
		var b bytes.Buffer
		for _, r := range f.days {
			f.dayOffsets = append(f.dayOffsets, b.Len())
			if err := flowgen.WriteJSONLines(&b, []*observer.GetFlowsResponse{r}); err != nil {
				return err
			}
		}
		f.dayOffsets = append(f.dayOffsets, b.Len())
		f.dayLines = b.Bytes()
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return f, nil
})

type scenarioFlows struct {
	weekLines []byte // the learning week as hubble observe -o jsonpb lines
	days      []*observer.GetFlowsResponse
	dayLines  []byte // days as jsonpb lines
	// dayOffsets[i] is where days[i]'s line starts in dayLines; the last
	// one is len(dayLines).
	dayOffsets []int
}

// lines returns the jsonpb lines of days[i:j].
func (f *scenarioFlows) lines(i, j int) []byte {
	return f.dayLines[f.dayOffsets[i]:f.dayOffsets[j]]
}

// learntWeek is restartFlows' week replayed with --detect: every app
// past its learning period, the normal week in the novelty window and the
// volume history. The replay must raise nothing.
var learntWeek = pgtest.NewSnapshot("learnt week", func(ctx context.Context, dsn postgres.DSN) error {
	flows, err := restartFlows()
	if err != nil {
		return err
	}
	r := runDSN(ctx, dsn, flows.weekLines, "replay", "--detect", "-")
	switch {
	case r.code != 0:
		return fmt.Errorf("replay --detect of the week: exit %d:\n%s", r.code, r.stderr)
	case strings.TrimSpace(r.stdout) != "":
		return fmt.Errorf("a normal week raised anomalies:\n%s", r.stdout)
	}
	return nil
})

// detectedDays is learntWeek with the days after it replayed with
// --detect in one process; detectedReplay is what that replay printed
// (the anomalies on stdout).
var (
	detectedReplay result
	detectedDays   = pgtest.NewSnapshotFrom(learntWeek, "detected days", func(ctx context.Context, dsn postgres.DSN) error {
		flows, err := restartFlows()
		if err != nil {
			return err
		}
		detectedReplay = runDSN(ctx, dsn, flows.dayLines, "replay", "--detect", "-")
		if detectedReplay.code != 0 {
			return fmt.Errorf("replay --detect of the days: exit %d:\n%s", detectedReplay.code, detectedReplay.stderr)
		}
		return nil
	})
)

// committedWeek is the committed capture replayed; committedReplay is
// what that replay printed.
var (
	committedReplay result
	committedWeek   = pgtest.NewSnapshot("committed week", func(ctx context.Context, dsn postgres.DSN) error {
		committedReplay = runDSN(ctx, dsn, nil, "replay", capture)
		if committedReplay.code != 0 {
			return fmt.Errorf("replay %s: exit %d:\n%s", capture, committedReplay.code, committedReplay.stderr)
		}
		return nil
	})
)

// snapshotEnv is the environment of a command run on a fresh copy of s.
func snapshotEnv(t testing.TB, s *pgtest.Snapshot) map[string]string {
	return map[string]string{"DATABASE_URL": string(s.URL(t))}
}

// runDSN runs an egressd command in-process on the database at dsn, with
// stdin as its input, outside any test (a snapshot's fill).
func runDSN(ctx context.Context, dsn postgres.DSN, stdin []byte, args ...string) result {
	var out, errOut bytes.Buffer
	c := &CLI{Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return string(dsn)
		}
		return ""
	}}
	code := c.Run(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestAccept(t *testing.T) {
	t.Parallel()
	github80 := egressd.Destination{Name: github.Name, Port: 80, Protocol: egressd.ProtoTCP}
	githubUDP := egressd.Destination{Name: github.Name, Port: 443, Protocol: egressd.ProtoUDP}
	// The anomalies every case starts from, all firing.
	novel443 := newAnomaly(AnomalyOpts{Destination: github})
	novel80 := newAnomaly(AnomalyOpts{Destination: github80})
	novelUDP := newAnomaly(AnomalyOpts{Destination: githubUDP})
	otherName := newAnomaly(AnomalyOpts{Destination: dnsUDP})
	otherApp := newAnomaly(AnomalyOpts{App: shop, Destination: github})
	flood := newAnomaly(AnomalyOpts{Kind: egressd.AnomalyNovelFlood, Destination: github})
	all := []egressd.Anomaly{novel443, novel80, novelUDP, otherName, otherApp, flood}

	tests := []struct {
		name         string
		accept       egressd.Destination
		wantResolved []egressd.Anomaly
		wantStored   egressd.Destination
	}{
		{
			name:         "one port",
			accept:       github,
			wantResolved: []egressd.Anomaly{novel443},
			wantStored:   github,
		},
		{
			name:         "port 0 means every port of the protocol",
			accept:       egressd.Destination{Name: github.Name, Port: 0, Protocol: egressd.ProtoTCP},
			wantResolved: []egressd.Anomaly{novel443, novel80},
			wantStored:   egressd.Destination{Name: github.Name, Port: 0, Protocol: egressd.ProtoTCP},
		},
		{
			name:         "protocol ANY means every protocol on the port",
			accept:       egressd.Destination{Name: github.Name, Port: 443, Protocol: "any"},
			wantResolved: []egressd.Anomaly{novel443, novelUDP},
			wantStored:   egressd.Destination{Name: github.Name, Port: 443, Protocol: egressd.ProtoAny},
		},
		{
			name:         "0/ANY means everything, name normalized",
			accept:       egressd.Destination{Name: "API.GitHub.com.", Port: 0, Protocol: egressd.ProtoAny},
			wantResolved: []egressd.Anomaly{novel443, novel80, novelUDP},
			wantStored:   egressd.Destination{Name: github.Name, Port: 0, Protocol: egressd.ProtoAny},
		},
		{
			name:       "a pattern is stored but resolves nothing",
			accept:     egressd.Destination{Name: "*.github.com", Port: 443, Protocol: egressd.ProtoTCP},
			wantStored: egressd.Destination{Name: "*.github.com", Port: 443, Protocol: egressd.ProtoTCP},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgtest.NewDB(t)
			for _, a := range all {
				record(t, db, a)
			}

			acceptedAt := at(time.Hour)
			require.NoError(t, db.Accept(ctx, egressd.Accepted{App: recyclarr, Destination: tt.accept, By: "alice", At: acceptedAt}))

			resolved := map[string]bool{}
			for _, a := range tt.wantResolved {
				resolved[a.Fingerprint] = true
			}
			for _, a := range all {
				got, err := db.Anomaly(ctx, a.Fingerprint)
				require.NoError(t, err)
				wantState := postgres.DeliveryFiring
				if resolved[a.Fingerprint] {
					require.Equal(t, acceptedAt, got.ResolvedAt, "%s %s %s", a.Kind, a.App, a.Destination)
					wantState = postgres.DeliveryResolved
				} else {
					require.True(t, got.ResolvedAt.IsZero(), "%s %s %s resolved", a.Kind, a.App, a.Destination)
				}
				for _, d := range deliveries(t, db, a.Fingerprint) {
					require.Equal(t, wantState, d.State)
				}
			}

			list, err := db.AcceptedAll(ctx)
			require.NoError(t, err)
			want := []egressd.Accepted{{App: recyclarr, Destination: tt.wantStored, By: "alice", At: acceptedAt}}
			if diff := cmp.Diff(want, list); diff != "" {
				t.Errorf("AcceptedAll (-want +got):\n%s", diff)
			}

			// Taking it back, spelled as accepted, leaves resolved ones
			// resolved.
			found, err := db.Unaccept(ctx, recyclarr, tt.accept)
			require.NoError(t, err)
			require.True(t, found)
			found, err = db.Unaccept(ctx, recyclarr, tt.accept)
			require.NoError(t, err)
			require.False(t, found, "second Unaccept")
			list, err = db.AcceptedAll(ctx)
			require.NoError(t, err)
			require.Empty(t, list)
			for _, a := range tt.wantResolved {
				got, err := db.Anomaly(ctx, a.Fingerprint)
				require.NoError(t, err)
				require.Equal(t, acceptedAt, got.ResolvedAt)
			}
		})
	}
}

func TestAcceptedAll(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	never := egressd.App{Namespace: "new", Name: "not-seen-yet"}
	accepts := []egressd.Accepted{
		{App: shop, Destination: github, By: "bob", At: at(3 * time.Hour)},
		{App: recyclarr, Destination: dnsUDP, By: "alice", At: at(time.Hour)},
		{App: recyclarr, Destination: github, By: "alice", At: at(time.Hour)},
		{App: never, Destination: rawIP, By: "carol", At: at(2 * time.Hour)},
		// Accepting again updates who and when.
		{App: recyclarr, Destination: github, By: "bob", At: at(4 * time.Hour)},
	}
	for _, a := range accepts {
		require.NoError(t, db.Accept(ctx, a))
	}
	got, err := db.AcceptedAll(ctx)
	require.NoError(t, err)
	want := []egressd.Accepted{
		{App: recyclarr, Destination: github, By: "bob", At: at(4 * time.Hour)},
		{App: recyclarr, Destination: dnsUDP, By: "alice", At: at(time.Hour)},
		{App: never, Destination: rawIP, By: "carol", At: at(2 * time.Hour)},
		{App: shop, Destination: github, By: "bob", At: at(3 * time.Hour)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AcceptedAll (-want +got):\n%s", diff)
	}
	// Accepting for an app never seen does not start its learning period.
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	require.Empty(t, apps)
}

func TestAcceptInvalid(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	tests := []struct {
		name   string
		accept egressd.Accepted
		want   string
	}{
		{name: "app", accept: egressd.Accepted{App: egressd.App{Namespace: "Bad NS", Name: "x"}, Destination: github, At: t0}, want: "invalid namespace"},
		{name: "name", accept: egressd.Accepted{App: recyclarr, Destination: egressd.Destination{Name: "bad name", Protocol: egressd.ProtoTCP}, At: t0}, want: "invalid destination"},
		{name: "empty name", accept: egressd.Accepted{App: recyclarr, Destination: egressd.Destination{Protocol: egressd.ProtoTCP}, At: t0}, want: "invalid destination"},
		{name: "protocol", accept: egressd.Accepted{App: recyclarr, Destination: egressd.Destination{Name: github.Name, Port: 443, Protocol: "QUIC"}, At: t0}, want: "invalid protocol"},
		{name: "no protocol", accept: egressd.Accepted{App: recyclarr, Destination: egressd.Destination{Name: github.Name, Port: 443}, At: t0}, want: "invalid protocol"},
		{name: "no time", accept: egressd.Accepted{App: recyclarr, Destination: github}, want: "Accepted.At is zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := db.Accept(t.Context(), tt.accept)
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
		})
	}
	_, err := db.Unaccept(t.Context(), recyclarr, egressd.Destination{Name: "a b", Protocol: egressd.ProtoTCP})
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
}

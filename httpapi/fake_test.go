package httpapi_test

import (
	"context"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

// fakeStore implements every store interface with function fields; a nil
// field answers empty.
type fakeStore struct {
	appSummaries func(ctx context.Context, f egressd.AppFilter) ([]egressd.AppSummary, error)
	appClusters  func(ctx context.Context, namespace, name string) ([]string, error)
	accept       func(ctx context.Context, a egressd.Accepted) error
}

// seenEverywhere answers AppClusters as if every app had been seen in the
// clusters "" and "edge".
func seenEverywhere(context.Context, string, string) ([]string, error) {
	return []string{"", "edge"}, nil
}

func (f *fakeStore) backends() *httpapi.Backends {
	return &httpapi.Backends{Apps: f, Destinations: f, Anomalies: f, Accepted: f}
}

func (f *fakeStore) AppSummaries(ctx context.Context, af egressd.AppFilter) ([]egressd.AppSummary, error) {
	if f.appSummaries == nil {
		return nil, nil
	}
	return f.appSummaries(ctx, af)
}

func (f *fakeStore) AppClusters(ctx context.Context, namespace, name string) ([]string, error) {
	if f.appClusters == nil {
		return nil, nil
	}
	return f.appClusters(ctx, namespace, name)
}

func (f *fakeStore) AppDestinations(context.Context, egressd.DestinationFilter) ([]egressd.DestinationRollup, error) {
	return nil, nil
}

func (f *fakeStore) AppWindowEntries(context.Context, egressd.App, time.Time, time.Time) ([]egressd.WindowEntry, error) {
	return nil, nil
}

func (f *fakeStore) Anomalies(context.Context, egressd.AnomalyFilter) ([]egressd.Anomaly, error) {
	return nil, nil
}

func (f *fakeStore) Anomaly(context.Context, string) (egressd.Anomaly, error) {
	return egressd.Anomaly{}, egressd.ErrNotFound
}

func (f *fakeStore) Accept(ctx context.Context, a egressd.Accepted) error {
	if f.accept == nil {
		return nil
	}
	return f.accept(ctx, a)
}

func (f *fakeStore) Unaccept(context.Context, egressd.App, egressd.Destination) (bool, error) {
	return true, nil
}

func (f *fakeStore) IsAccepted(context.Context, egressd.App, egressd.Destination) (bool, error) {
	return false, nil
}

package egressd

import "time"

// The read models of the operator API: what it lists, how a listing is
// filtered and how it continues from one page to the next. Storage answers
// them; the HTTP API shows them. Every listing is paged by keyset (the key
// of the last row of the previous page), so a page costs the same wherever
// it starts and pages never skip or repeat a row, whatever is written
// between two of them.

// Page sizes of every listing.
const (
	// DefaultPageSize is the page size of a filter without a Limit.
	DefaultPageSize = 100
	// MaxPageSize is the largest page; a larger Limit is lowered to it.
	MaxPageSize = 1000
)

// PageSize returns the page size a Limit asks for: DefaultPageSize for 0,
// at most MaxPageSize. A negative limit is an EINVALID error naming what.
func PageSize(what string, limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, Errorf(EINVALID, "%s: limit must be >= 0, got %d", what, limit)
	case limit == 0:
		return DefaultPageSize, nil
	case limit > MaxPageSize:
		return MaxPageSize, nil
	}
	return limit, nil
}

// AppSummary is an app as the API lists it.
type AppSummary struct {
	App       App
	FirstSeen time.Time
	LastSeen  time.Time
	// Destinations counts the app's destinations (any verdict) last seen
	// at or after the filter's Since.
	Destinations int
	// Firing counts the app's anomalies that have not resolved.
	Firing int
}

// AppFilter selects a page of apps, sorted by cluster, namespace and name
// (bytewise).
type AppFilter struct {
	// Since, when set, counts only the destinations last seen at or after
	// it in AppSummary.Destinations; zero counts them all.
	Since time.Time
	// Limit is the page size (see PageSize).
	Limit int
	// After continues a listing: the app (cluster, namespace and name)
	// that ended the previous page.
	After *App
}

// DestinationFilter selects a page of one app's destinations, sorted by
// cluster, name, port and protocol (bytewise).
type DestinationFilter struct {
	// App names the app by namespace and name; its Cluster, when set,
	// selects one cluster, else every cluster the app runs in.
	App App
	// Since, when set, selects destinations last seen at or after it.
	Since time.Time
	// Limit is the page size (see PageSize).
	Limit int
	// After continues a listing: the key of the destination that ended
	// the previous page.
	After *DestinationCursor
}

// DestinationCursor is a position in a listing of an app's destinations.
type DestinationCursor struct {
	Cluster     string
	Destination Destination
}

// AnomalyState selects anomalies by whether they fire.
type AnomalyState int

// Anomaly states a listing can select.
const (
	AnomaliesAll AnomalyState = iota
	AnomaliesFiring
	AnomaliesResolved
)

// AnomalyFilter selects a page of anomalies, newest first (by start time,
// then by fingerprint, descending). The zero value selects the newest
// DefaultPageSize anomalies.
type AnomalyFilter struct {
	State AnomalyState
	// App, when set, selects one app's anomalies (in App.Cluster).
	App *App
	// Kind, when set, selects one kind.
	Kind AnomalyKind
	// Since, when set, selects anomalies that started at or after it.
	Since time.Time
	// Limit is the page size (see PageSize).
	Limit int
	// After continues a listing: set it to the Time and Fingerprint of the
	// last anomaly of the previous page to get the next one.
	After *AnomalyCursor
}

// AnomalyCursor is a position in a listing of anomalies.
type AnomalyCursor struct {
	Time        time.Time
	Fingerprint string
}

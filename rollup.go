package egressd

import "time"

// Rollup is what one flush interval adds to the store. Every field merges
// commutatively (counts add, first-seen takes the minimum, last-seen the
// maximum, verdict sets OR), so several collectors may write at once and the
// order of flushes does not matter.
type Rollup struct {
	// ID, when set, makes writing the rollup idempotent: a rollup whose ID
	// was committed before is not written again. A writer that could not
	// tell whether a commit landed (the connection broke before its
	// answer) retries the same rollup under the same ID.
	ID           string
	Destinations []DestinationRollup
	Hourly       []HourlyRollup
	DNSQueries   []DNSQueryRollup
	// DNSAnswers are the answers pods received, so that a restart names
	// the connections that follow them as the running process would have.
	DNSAnswers []DNSAnswer
	// LabelSets are the label sets of the apps' pods, and Resolvers the
	// DNS servers they asked: what policy generation selects pods and
	// allows DNS by.
	LabelSets []AppLabelSet
	Resolvers []AppResolver
	// Lost are the lost_events records Hubble sent: flows that no
	// collector saw, by node.
	Lost []LostEvents
	// Cursors are the newest flow time per source covered by this rollup;
	// they are stored in the same transaction, so a restart resumes after
	// the last committed flush and never re-counts it.
	Cursors []Cursor
}

// Empty reports whether the rollup has nothing to write.
func (r *Rollup) Empty() bool {
	return len(r.Destinations) == 0 && len(r.Hourly) == 0 && len(r.DNSQueries) == 0 && len(r.DNSAnswers) == 0 && len(r.LabelSets) == 0 && len(r.Resolvers) == 0 && len(r.Lost) == 0 && len(r.Cursors) == 0
}

// DestinationRollup is an app's traffic to one destination during a flush.
type DestinationRollup struct {
	App          App
	Destination  Destination
	FirstSeen    time.Time
	LastSeen     time.Time
	Flows        int64
	DroppedFlows int64
	Verdicts     VerdictSet
	ExamplePod   string
	NameSource   NameSource
}

// HourlyRollup counts an app's flows to one destination in one hour (Hour is
// truncated to the hour, UTC).
type HourlyRollup struct {
	App          App
	Destination  Destination
	Hour         time.Time
	Flows        int64
	DroppedFlows int64
}

// DNSQueryRollup counts an app's DNS questions for one name during a flush.
type DNSQueryRollup struct {
	App       App
	Name      string
	FirstSeen time.Time
	LastSeen  time.Time
	Queries   int64
}

// Cursor is how far a flow source has been stored.
type Cursor struct {
	Source string
	Time   time.Time
}

// WindowEntry is one (app, destination) that had allowed traffic within a
// time window: the input of a baseline build.
type WindowEntry struct {
	App         App
	Destination Destination
	FirstSeen   time.Time
	LastSeen    time.Time
	Flows       int64
	// ExamplePod is a pod the traffic came from, when one is known.
	ExamplePod string
}

// LostEvents is one lost_events record of Hubble: Events events lost at
// Time on Node, in the buffer Source names (HUBBLE_RING_BUFFER...). A
// record is identified by its node, time and source, so storing it twice
// counts it once.
type LostEvents struct {
	Node   string
	Time   time.Time
	Source string
	Events int64
}

// NodeLoss sums the events a node lost within a window: flows no
// collector saw, which a baseline of that window may therefore miss.
type NodeLoss struct {
	Node        string
	Events      int64
	First, Last time.Time
}

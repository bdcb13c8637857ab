package egressd

import (
	"net/netip"
	"time"
)

// AppHour is an app's flows, of every verdict, in one UTC hour: what the
// volume rule's history is made of after a restart.
type AppHour struct {
	App   App
	Hour  time.Time
	Flows int64
}

// AppPod is a pod an app's flows came from, and when it was last reported.
type AppPod struct {
	App      App
	Pod      string
	LastSeen time.Time
}

// DNSAnswer is an address a DNS answer gave a pod for the name it asked,
// valid until Expires (flow time): how a later connection of that pod to
// the address is named, also after a restart.
type DNSAnswer struct {
	Namespace string
	Pod       string
	Addr      netip.Addr
	Name      string
	Expires   time.Time
}

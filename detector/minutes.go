package detector

// minuteRing counts an app's flows per minute over the volume rule's
// history window (HistoryWindow, a day by default). Most apps have flows
// in few of those minutes, and an app that appears once (a bare pod, a
// Job) has one: a table of every minute of the day, 5.8 KB, would make
// each new app cost that much (docs/operations.md, "Bounds"). So the
// minutes start as a sorted list of those that have flows, 16 bytes
// each, and become the table only once the list would be a quarter of
// its size; a busy app costs what it did, a one-flow app 16 bytes.
type minuteRing struct {
	// dense, when not nil, counts every minute of the window, by minute
	// modulo its length; sparse holds the minutes with flows otherwise,
	// oldest first, none older than the window.
	dense  []uint32
	sparse []minuteCount
	size   int   // minutes in the window
	last   int64 // newest minute written
	first  int64 // first minute ever counted
	pod    string
}

type minuteCount struct {
	minute int64
	n      uint32
}

func newMinuteRing(size int, last, first int64) *minuteRing {
	return &minuteRing{size: size, last: last, first: first}
}

func mod(m int64, n int) int { return int((m%int64(n) + int64(n)) % int64(n)) }

// inWindow reports whether minute is within the window ending at r.last.
func (r *minuteRing) inWindow(minute int64) bool {
	return minute <= r.last && minute > r.last-int64(r.size)
}

// add counts n flows in minute, which must be within the window.
func (r *minuteRing) add(minute int64, n uint32) {
	if r.dense != nil {
		r.dense[mod(minute, r.size)] += n
		return
	}
	// Flows come in time order, so the minute is nearly always the last
	// one or a new one after it.
	i := len(r.sparse)
	for i > 0 && r.sparse[i-1].minute > minute {
		i--
	}
	if i > 0 && r.sparse[i-1].minute == minute {
		r.sparse[i-1].n += n
		return
	}
	if len(r.sparse) >= r.size/4 {
		r.densify()
		r.dense[mod(minute, r.size)] += n
		return
	}
	r.sparse = append(r.sparse, minuteCount{})
	copy(r.sparse[i+1:], r.sparse[i:])
	r.sparse[i] = minuteCount{minute: minute, n: n}
}

// densify turns the list into the table.
func (r *minuteRing) densify() {
	r.dense = make([]uint32, r.size)
	for _, c := range r.sparse {
		r.dense[mod(c.minute, r.size)] = c.n
	}
	r.sparse = nil
}

// advance moves the window's end to minute, dropping the minutes that leave
// it.
func (r *minuteRing) advance(minute int64) {
	if minute <= r.last {
		return
	}
	if r.dense != nil && minute-r.last >= int64(r.size) {
		r.dense = nil // every minute leaves the window: back to an empty list
	}
	if r.dense != nil {
		gap := min(minute-r.last, int64(r.size))
		for i := int64(1); i <= gap; i++ {
			r.dense[mod(r.last+i, r.size)] = 0
		}
		r.last = minute
		return
	}
	r.last = minute
	drop := 0
	for drop < len(r.sparse) && !r.inWindow(r.sparse[drop].minute) {
		drop++
	}
	if drop > 0 {
		r.sparse = append(r.sparse[:0], r.sparse[drop:]...)
	}
	if len(r.sparse) == 0 {
		r.sparse = nil // a long-idle app keeps no array
	}
}

// empty reports whether no minute of the window has flows (a table is
// dropped once a whole window passes without any).
func (r *minuteRing) empty() bool { return r.dense == nil && len(r.sparse) == 0 }

// sums returns the flows of the short minutes before now and of the other
// minutes of the history before them, each within the window.
func (r *minuteRing) sums(now int64, short, history int) (cur, hist uint64) {
	if r.dense == nil {
		for _, c := range r.sparse {
			i := now - c.minute // 1 for the minute before now
			switch {
			case i < 1 || i > int64(history) || !r.inWindow(c.minute):
			case i <= int64(short):
				cur += uint64(c.n)
			default:
				hist += uint64(c.n)
			}
		}
		return cur, hist
	}
	for i := 1; i <= history; i++ {
		m := now - int64(i)
		if !r.inWindow(m) {
			continue
		}
		c := uint64(r.dense[mod(m, r.size)])
		if i <= short {
			cur += c
		} else {
			hist += c
		}
	}
	return cur, hist
}

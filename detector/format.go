package detector

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// formatRate writes a rate as a person would: two significant digits at
// most ("0.00046 flows/s", "5.0 flows/s", "310 flows/s"), and bytes/s in
// decimal units ("1.5 MB/s").
func formatRate(v float64, unit string) string {
	if unit == "bytes/s" {
		for _, u := range []string{"B/s", "kB/s", "MB/s", "GB/s"} {
			if math.Abs(v) < 1000 || u == "GB/s" {
				return formatNumber(v) + " " + u
			}
			v /= 1000
		}
	}
	return formatNumber(v) + " " + unit
}

// formatNumber keeps two significant digits, and one decimal at least
// below 10 ("5.0"): enough to compare two rates, without false precision.
func formatNumber(v float64) string {
	switch {
	case v == 0 || math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	decimals := int(-math.Floor(math.Log10(math.Abs(v)))) + 1
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
	}
	return s
}

// formatSpan writes a window as "24 h", "90 min" or "1 h 30 min".
func formatSpan(d time.Duration) string {
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return strconv.Itoa(m) + " min"
	case m == 0:
		return strconv.Itoa(h) + " h"
	}
	return strconv.Itoa(h) + " h " + strconv.Itoa(m) + " min"
}

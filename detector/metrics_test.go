package detector_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/detector"
)

// An alert on egressd_detector_volume_source_up == 0 must not fire on an
// install whose volume rule reads Hubble's flow rate (no Prometheus): the
// gauge starts at 1 and only a failing query sets it to 0.
func TestVolumeSourceUpStartsUp(t *testing.T) {
	t.Parallel()
	m := detector.NewMetrics(prometheus.NewRegistry())
	require.Equal(t, 1.0, testutil.ToFloat64(m.VolumeSourceUp))
}

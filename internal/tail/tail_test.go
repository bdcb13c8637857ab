package tail_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/internal/tail"
)

func TestWriterKeepsTheEnd(t *testing.T) {
	w := tail.New(8)
	fmt.Fprint(w, "0123")
	require.Equal(t, "0123", w.String())
	fmt.Fprint(w, "456789ab")
	require.Equal(t, "456789ab", w.String())
	fmt.Fprint(w, "cd")
	require.Equal(t, "6789abcd", w.String())
	w.Reset()
	require.Empty(t, w.String())

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { fmt.Fprint(w, "xyzw") })
	}
	wg.Wait()
	require.Equal(t, "xyzwxyzw", w.String())
}

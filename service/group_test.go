package service_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/service"
)

// events records what components did, in order.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, s)
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

// waiter is a component that runs until its context ends, then takes a
// moment to stop, as a last flush does: the next component must not be
// told to stop before it has returned.
func waiter(ev *events, name string, started *sync.WaitGroup) func(ctx context.Context) error {
	started.Add(1)
	return func(ctx context.Context) error {
		started.Done()
		<-ctx.Done()
		ev.add(name + " told to stop")
		time.Sleep(20 * time.Millisecond)
		ev.add(name + " stopped")
		return nil
	}
}

func TestGroupStopsInOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// fail, when set, is the component that returns by itself.
		fail    string
		failErr error
		want    []string
		wantErr string
	}{
		{
			name: "context cancelled",
			want: []string{
				"stream told to stop", "stream stopped", "detector told to stop", "detector stopped",
				"alerts told to stop", "alerts stopped", "http told to stop", "http stopped",
			},
		},
		{
			name: "the last component fails", fail: "http", failErr: errors.New("listener closed"),
			want: []string{
				"http failed",
				"stream told to stop", "stream stopped", "detector told to stop", "detector stopped",
				"alerts told to stop", "alerts stopped",
			},
			wantErr: "http: listener closed",
		},
		{
			name: "a middle component fails", fail: "detector", failErr: errors.New("store gone"),
			want: []string{
				"detector failed",
				"stream told to stop", "stream stopped",
				"alerts told to stop", "alerts stopped", "http told to stop", "http stopped",
			},
			wantErr: "detector: store gone",
		},
		{
			name: "the first component finishes", fail: "stream",
			want: []string{
				"stream failed",
				"detector told to stop", "detector stopped",
				"alerts told to stop", "alerts stopped", "http told to stop", "http stopped",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := &events{}
			var started sync.WaitGroup
			release := make(chan struct{})
			g := service.NewGroup(nil)
			for _, name := range []string{"stream", "detector", "alerts", "http"} {
				if name == tc.fail {
					started.Add(1)
					g.Add(name, func(ctx context.Context) error {
						started.Done()
						<-release
						ev.add(name + " failed")
						return tc.failErr
					})
					continue
				}
				g.Add(name, waiter(ev, name, &started))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			started.Wait()
			if tc.fail != "" {
				close(release)
			} else {
				cancel()
			}
			err := <-done
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, ev.list()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

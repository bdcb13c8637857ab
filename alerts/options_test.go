package alerts_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts"
)

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	valid := func() alerts.Options {
		o := alerts.DefaultOptions()
		o.Targets = []string{"http://alertmanager-0.monitoring:9093", "https://user:pw@am.example.com/alertmanager/"}
		o.ExternalURL = "https://egressd.example.com"
		return o
	}
	tests := []struct {
		name   string
		change func(o *alerts.Options)
		want   string // "" for valid
	}{
		{name: "defaults with targets", change: func(o *alerts.Options) {}},
		{name: "no clock", change: func(o *alerts.Options) { o.Now = nil }},
		{name: "no external URL", change: func(o *alerts.Options) { o.ExternalURL = "" }},
		{name: "no targets", change: func(o *alerts.Options) { o.Targets = nil },
			want: "alerts: Options.Targets is empty: want at least one Alertmanager URL such as http://alertmanager:9093"},
		{name: "ftp", change: func(o *alerts.Options) { o.Targets[1] = "ftp://x" },
			want: `alerts: Options.Targets[1] "ftp://x": want an http or https URL`},
		{name: "no scheme", change: func(o *alerts.Options) { o.Targets[0] = "alertmanager:9093" },
			want: `alerts: Options.Targets[0] "alertmanager:9093": want an http or https URL`},
		{name: "no host", change: func(o *alerts.Options) { o.Targets[0] = "http:///api" },
			want: `alerts: Options.Targets[0] "http:///api": want an http or https URL with a host`},
		{name: "password redacted", change: func(o *alerts.Options) { o.Targets[0] = "ftp://admin:hunter2@am:9093" },
			want: `alerts: Options.Targets[0] "ftp://admin:xxxxx@am:9093": want an http or https URL`},
		{name: "unparseable URL never shown", change: func(o *alerts.Options) { o.Targets[0] = "http://admin:hunter2@[::1" },
			want: `alerts: Options.Targets[0] (not shown: it may hold a password): not a URL: want an http or https URL such as http://alertmanager:9093`},
		{name: "duplicate", change: func(o *alerts.Options) { o.Targets[1] = o.Targets[0] + "/" },
			want: `alerts: Options.Targets[1] "http://alertmanager-0.monitoring:9093/": duplicates Options.Targets[0]`},
		{name: "duplicate with another password", change: func(o *alerts.Options) { o.Targets[0] = "https://user:hunter2@am.example.com/alertmanager" },
			want: `alerts: Options.Targets[1] "https://user:xxxxx@am.example.com/alertmanager/": duplicates Options.Targets[0]`},
		{name: "query", change: func(o *alerts.Options) { o.Targets[0] += "/?x=1" },
			want: `alerts: Options.Targets[0] "http://alertmanager-0.monitoring:9093/?x=1": want a base URL without query or fragment`},
		{name: "resend", change: func(o *alerts.Options) { o.ResendInterval = 0 },
			want: "alerts: Options.ResendInterval must be > 0"},
		{name: "timeout", change: func(o *alerts.Options) { o.Timeout = 0 },
			want: "alerts: Options.Timeout must be > 0"},
		{name: "lease shorter than timeout", change: func(o *alerts.Options) { o.Lease = 5 * time.Second },
			want: "alerts: Options.Lease (5s) must be longer than Options.Timeout (5s)"},
		{name: "batch", change: func(o *alerts.Options) { o.BatchSize = 0 },
			want: "alerts: Options.BatchSize must be > 0"},
		{name: "backoff min", change: func(o *alerts.Options) { o.BackoffMin = 0 },
			want: "alerts: Options.BackoffMin must be > 0"},
		{name: "backoff max", change: func(o *alerts.Options) { o.BackoffMax = time.Millisecond },
			want: "alerts: Options.BackoffMax (1ms) must be >= Options.BackoffMin (1s)"},
		{name: "poll", change: func(o *alerts.Options) { o.PollInterval = 0 },
			want: "alerts: Options.PollInterval must be > 0"},
		{name: "external URL scheme", change: func(o *alerts.Options) { o.ExternalURL = "egressd:9090" },
			want: `alerts: Options.ExternalURL "egressd:9090": want an http or https URL`},
		{name: "external URL credentials", change: func(o *alerts.Options) { o.ExternalURL = "https://a:b@egressd" },
			want: `alerts: Options.ExternalURL "https://a:xxxxx@egressd": want a base URL without credentials, query or fragment, such as https://egressd.example.com`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := valid()
			tt.change(&o)
			err := o.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestNewSenderValidates(t *testing.T) {
	t.Parallel()
	_, err := alerts.NewSender(&funcOutbox{}, alerts.DefaultOptions(), nil, nil)
	require.ErrorContains(t, err, "Options.Targets is empty")
}

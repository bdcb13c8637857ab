package postgres_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres"
)

func TestDSNRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dsn  postgres.DSN
		want string // String()
	}{
		{
			name: "url",
			dsn:  "postgres://egressd:s3cr3t-pw@db.example.com:5432/egressd?sslmode=require",
			want: "postgres://egressd:xxxxx@db.example.com:5432/egressd?sslmode=require",
		},
		{
			name: "postgresql scheme, escaped password",
			dsn:  "postgresql://egressd:s3cr3t%2Fpw@db:5432/egressd",
			want: "postgresql://egressd:xxxxx@db:5432/egressd",
		},
		{
			name: "password in the query",
			dsn:  "postgres://db/egressd?user=egressd&password=s3cr3t-pw&sslpassword=s3cr3t-key",
			want: "postgres://db/egressd?password=xxxxx&sslpassword=xxxxx&user=egressd",
		},
		{
			name: "url net/url cannot parse",
			dsn:  "postgres://egressd:s3cr3t-pw@h1:5432,h2:5432/egressd",
			want: "postgres://egressd:xxxxx@h1:5432,h2:5432/egressd",
		},
		{
			name: "unparseable url with an unescaped @ in the password",
			dsn:  "postgres://egressd:s3cr3t@pw@h1:5432,h2:5432/egressd",
			want: "postgres://egressd:xxxxx@h1:5432,h2:5432/egressd",
		},
		{
			name: "keyword/value",
			dsn:  "host=db user=egressd password=s3cr3t-pw dbname=egressd",
			want: "host=db user=egressd password=xxxxx dbname=egressd",
		},
		{
			name: "keyword/value, quoted with spaces",
			dsn:  `host=db password = 's3cr3t pw \' more' dbname=egressd`,
			want: "host=db password = xxxxx dbname=egressd",
		},
		{
			name: "no password",
			dsn:  "postgres://egressd@db/egressd",
			want: "postgres://egressd@db/egressd",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.dsn.String())

			opts := postgres.Options{URL: tt.dsn, MaxConns: 4}
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			logger.Info("connect", "url", tt.dsn, "opts", opts)
			slog.New(slog.NewTextHandler(&logs, nil)).Info("connect", "url", tt.dsn)
			js, err := json.Marshal(opts)
			require.NoError(t, err)

			for _, out := range []string{
				fmt.Sprint(tt.dsn),
				fmt.Sprintf("%s %v %q %x", tt.dsn, tt.dsn, tt.dsn, tt.dsn),
				fmt.Sprintf("%v %+v %#v", opts, opts, opts),
				fmt.Sprintf("%#v", tt.dsn),
				logs.String(),
				string(js),
			} {
				require.NotContains(t, out, "s3cr3t", "password leaked")
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	valid := postgres.Options{URL: "postgres://egressd:s3cr3t@db/egressd", MaxConns: 4}
	tests := []struct {
		name    string
		modify  func(*postgres.Options)
		wantErr string
	}{
		{name: "valid", modify: func(*postgres.Options) {}},
		{
			name:    "empty url",
			modify:  func(o *postgres.Options) { o.URL = "" },
			wantErr: "postgres: Options.URL is empty: set --database-url or DATABASE_URL",
		},
		{
			name:    "bad port",
			modify:  func(o *postgres.Options) { o.URL = "postgres://egressd:s3cr3t@db:99999x/egressd" },
			wantErr: "postgres: Options.URL postgres://egressd:xxxxx@db:99999x/egressd is not a valid PostgreSQL connection string (invalid port): want postgres://USER:PASSWORD@HOST:PORT/DATABASE",
		},
		{
			name:    "bad sslmode",
			modify:  func(o *postgres.Options) { o.URL += "?sslmode=sometimes" },
			wantErr: "postgres: Options.URL postgres://egressd:xxxxx@db/egressd?sslmode=sometimes is not a valid PostgreSQL connection string (failed to configure TLS (sslmode is invalid)): want postgres://USER:PASSWORD@HOST:PORT/DATABASE",
		},
		{
			name:    "no connections",
			modify:  func(o *postgres.Options) { o.MaxConns = 0 },
			wantErr: "postgres: Options.MaxConns must be >= 1, got 0",
		},
		{
			name:    "negative timeout",
			modify:  func(o *postgres.Options) { o.ConnectTimeout = -1 },
			wantErr: "postgres: Options.ConnectTimeout must be >= 0, got -1ns",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := valid
			tt.modify(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestDefaultOptions(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://egressd:s3cr3t@db/egressd")
	o := postgres.DefaultOptions()
	require.Equal(t, postgres.DSN("postgres://egressd:s3cr3t@db/egressd"), o.URL)
	require.NoError(t, o.Validate())
}

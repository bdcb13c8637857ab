package main

import (
	"flag"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// commands are every command line that has flags of its own.
var commands = [][]string{
	{"serve"}, {"migrate"}, {"replay"}, {"baseline", "export"}, {"baseline", "diff"},
	{"baseline", "policy"}, {"accept"}, {"demo"},
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		r := run(t, nil, args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		require.Regexp(t, `^egressd dev \(commit [0-9a-z-]+, `+regexp.QuoteMeta(runtime.Version())+`, [a-z0-9]+/[a-z0-9]+\)\n$`, r.stdout, "%v", args)
		require.Empty(t, r.stderr)
	}
	r := run(t, nil, "version", "extra")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unexpected argument "extra"`)
}

func TestVersionSetAtBuildTime(t *testing.T) {
	// Not parallel: it sets the variables -ldflags sets.
	oldV, oldC := version, commit
	t.Cleanup(func() { version, commit = oldV, oldC })
	version, commit = "v1.2.3", "0123456789abcdef0123"
	require.Equal(t, "egressd v1.2.3 (commit 0123456789ab, "+runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH+")", versionLine())
}

// TestHelpGoesToStdout: -h, --help and `egressd help COMMAND` print the
// command's usage on stdout, with flags written --name, and exit 0.
func TestHelpGoesToStdout(t *testing.T) {
	t.Parallel()
	for _, cmd := range commands {
		for _, h := range []string{"-h", "--help"} {
			r := run(t, nil, append(append([]string{}, cmd...), h)...)
			require.Equal(t, 0, r.code, "%v %s: %s", cmd, h, r.stderr)
			require.Empty(t, r.stderr, "%v %s", cmd, h)
			require.Contains(t, r.stdout, "Usage", "%v %s", cmd, h)
			require.Contains(t, r.stdout, "  --log-level string\n", "%v %s", cmd, h)
			require.NotRegexp(t, `(?m)^\s+-[a-z]`, r.stdout, "%v %s shows a flag as -name", cmd, h)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"baseline", "--help"}, {"help", "serve"}} {
		r := run(t, nil, args...)
		require.Equal(t, 0, r.code, "%v", args)
		require.Empty(t, r.stderr, "%v", args)
		require.Contains(t, r.stdout, "Usage", "%v", args)
	}
	require.Contains(t, run(t, nil, "help", "serve").stdout, "--hubble-address string")
}

// TestHelpShowsDurationsAsWritten: defaults read 24h and 30d, never
// 24h0m0s.
func TestHelpShowsDurationsAsWritten(t *testing.T) {
	t.Parallel()
	r := run(t, nil, "serve", "--help")
	for _, want := range []string{
		"  --retention duration\n", "(default 30d)", "(default 24h)", "(default 1m)", "(default 10s)",
	} {
		require.Contains(t, r.stdout, want)
	}
	require.NotRegexp(t, `\d+h\d+m\d+s|\d+m0s`, r.stdout)
	require.Contains(t, run(t, nil, "baseline", "export", "--help").stdout, "(default 7d)")
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 200 * time.Millisecond: "200ms", time.Second: "1s", 90 * time.Second: "1m30s",
		time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "24h", 36 * time.Hour: "36h",
		48 * time.Hour: "2d", 7 * 24 * time.Hour: "7d", 30 * 24 * time.Hour: "30d",
		49 * time.Hour: "2d1h", -time.Minute: "-1m",
	} {
		require.Equal(t, want, formatDuration(d), "%v", d)
		if d >= 0 {
			var got time.Duration
			require.NoError(t, (&durationValue{d: &got}).Set(want), "%s parses back", want)
			require.Equal(t, d, got, "%s parses back", want)
		}
	}
}

// TestDurationFlags: every duration flag of every command takes
// Prometheus' units and refuses what is not a duration, naming the flag.
func TestDurationFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "2w", want: 14 * 24 * time.Hour},
		{in: "1y", want: 365 * 24 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "", err: true},
		{in: "7", err: true},
		{in: "-1h", err: true},
		{in: "1.5h", err: true},
		{in: "30m1h", err: true},
		{in: "soon", err: true},
		{in: "9999999y", err: true},
	}
	for _, tt := range tests {
		var d time.Duration
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		durationVar(fs, &d, "window", time.Hour, "")
		_, err := parseArgs(fs, []string{"--window", tt.in})
		if tt.err {
			require.Error(t, err, "%q", tt.in)
			require.Contains(t, err.Error(), `invalid value "`+tt.in+`" for flag --window: not a duration`)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		require.Equal(t, tt.want, d, "%q", tt.in)
		require.Equal(t, tt.in, fs.Lookup("window").Value.String(), "shown as written")
	}

	// Each command's duration flags are durationValues.
	for _, cmd := range commands {
		r := run(t, nil, append(append([]string{}, cmd...), "--help")...)
		for _, line := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(line, "  --") && strings.Contains(line, "duration") {
				name := strings.Fields(line)[0]
				r := run(t, nil, append(append([]string{}, cmd...), name, "2w", "--frob")...)
				require.Contains(t, r.stderr, "not defined: --frob", "%v %s 2w parses", cmd, name)
			}
		}
	}
}

// TestOneSetOfLogLevels: every command takes the same --log-level values
// and refuses the same mistakes while parsing, before doing anything.
func TestOneSetOfLogLevels(t *testing.T) {
	t.Parallel()
	for _, cmd := range commands {
		r := run(t, nil, append(append([]string{}, cmd...), "--log-level", "verbose")...)
		require.Equal(t, 2, r.code, "%v", cmd)
		require.Equal(t, "egressd: invalid value \"verbose\" for flag --log-level: want debug, info, warn or error\n"+
			"Run '"+commandName(cmd)+" --help' for usage.\n", r.stderr, "%v", cmd)
		r = run(t, nil, append(append([]string{}, cmd...), "--log-format", "xml")...)
		require.Equal(t, 2, r.code, "%v", cmd)
		require.Contains(t, r.stderr, `invalid value "xml" for flag --log-format: want text or json`)
		for _, level := range logLevels {
			r := run(t, nil, append(append([]string{}, cmd...), "--log-level", level, "--frob")...)
			require.Contains(t, r.stderr, "not defined: --frob", "%v accepts --log-level %s", cmd, level)
		}
	}
}

// TestUsageErrorIsOneLineAndAHint: a mistake names the argument at fault
// and how to get help, on stderr, without the whole usage.
func TestUsageErrorIsOneLineAndAHint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--retention", "soon"}, "egressd: invalid value \"soon\" for flag --retention: not a duration: want an integer and a unit, like 30s, 5m, 24h, 7d or 2w\nRun 'egressd serve --help' for usage.\n"},
		{[]string{"serve", "--frob"}, "egressd: flag provided but not defined: --frob\nRun 'egressd serve --help' for usage.\n"},
		{[]string{"replay", "--cluster"}, "egressd: flag needs an argument: --cluster\nRun 'egressd replay --help' for usage.\n"},
		{[]string{"accept", "--remove=maybe"}, "egressd: invalid boolean value \"maybe\" for --remove: parse error\nRun 'egressd accept --help' for usage.\n"},
		{[]string{"baseline", "diff", "--window", "0", "--dir", "x"}, "egressd: baseline diff: --window must be > 0\nRun 'egressd baseline diff --help' for usage.\n"},
		{[]string{"baseline", "frob"}, "egressd: baseline: unknown subcommand \"frob\": want export, diff, check or policy\nRun 'egressd baseline --help' for usage.\n"},
		{[]string{"frob"}, "egressd: unknown command \"frob\"\nRun 'egressd --help' for usage.\n"},
		{[]string{"--frob"}, "egressd: unknown command \"--frob\"\nRun 'egressd --help' for usage.\n"},
	}
	for _, tt := range tests {
		r := run(t, nil, tt.args...)
		require.Equal(t, 2, r.code, "%v", tt.args)
		require.Equal(t, tt.want, r.stderr, "%v", tt.args)
		require.Empty(t, r.stdout, "%v", tt.args)
	}
}

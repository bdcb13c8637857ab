package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Command-line conventions, shared by every command and kept as operators
// know them from kubectl, hubble, promtool and amtool:
//
//   - flags are shown as --name; -name works too (the flag package reads both);
//   - -h and --help print the command's usage on stdout and exit 0;
//   - a mistake prints one line naming the argument at fault and a hint
//     (`egressd serve --help` for usage) on stderr, and exits 2;
//   - durations are written the Prometheus way (30s, 5m, 24h, 7d, 2w) and
//     shown as written.
//
// The standard flag package parses; printFlags and parseArgs supply the
// presentation it lacks. Every duration flag is a durationValue: define one
// with durationVar or durationFlag, never fs.Duration or fs.DurationVar.

// durationValue is a flag.Value holding a duration in Prometheus' notation
// (github.com/prometheus/common/model): an integer and a unit, units from
// largest to smallest (1h30m), among y, w, d, h, m, s and ms. Negative and
// fractional durations are refused.
type durationValue struct {
	d    *time.Duration
	text string // as the operator wrote it; "" shows *d formatted
}

// Set parses s.
func (v *durationValue) Set(s string) error {
	d, err := model.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration: want an integer and a unit, like 30s, 5m, 24h, 7d or 2w")
	}
	*v.d, v.text = time.Duration(d), s
	return nil
}

// String returns the duration as written, or formatted when it was not.
func (v *durationValue) String() string {
	if v.d == nil {
		return ""
	}
	if v.text != "" {
		return v.text
	}
	return formatDuration(*v.d)
}

// Type names the value in usage messages.
func (v *durationValue) Type() string { return "duration" }

// durationVar defines a duration flag stored in p.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var(&durationValue{d: p}, name, usage)
}

// durationFlag defines a duration flag and returns where it is stored.
func durationFlag(fs *flag.FlagSet, name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	durationVar(fs, p, name, value, usage)
	return p
}

// formatDuration writes d the way an operator would: 24h, 7d, 30d, 1m,
// 200ms, 1h30m; never 24h0m0s. Whole days from two days up are days; below
// that whole hours stay hours. Every result parses back to d with
// durationValue (to the millisecond).
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < 0:
		return "-" + formatDuration(-d)
	case d == 0:
		return "0s"
	case d%day == 0 && d >= 2*day:
		return fmt.Sprintf("%dd", d/day)
	case d%time.Hour == 0 && d < 2*day:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return model.Duration(d).String()
}

// choiceValue is a string flag that takes one of a fixed set of values, so
// that every command checks it the same way while parsing.
type choiceValue struct {
	p       *string
	choices []string
}

// Set accepts s when it is one of the choices.
func (v *choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(v.choices))
}

// String returns the current value.
func (v *choiceValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// Type names the value in usage messages.
func (v *choiceValue) Type() string { return "string" }

// choiceVar defines a flag that takes one of choices, stored in p.
func choiceVar(fs *flag.FlagSet, p *string, name, value string, choices []string, usage string) {
	*p = value
	fs.Var(&choiceValue{p: p, choices: choices}, name, usage)
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// printFlags writes fs's flags to its output as --name TYPE, the usage on
// the next line, and the default when it is not the zero value.
func printFlags(fs *flag.FlagSet) {
	w := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if t, ok := f.Value.(interface{ Type() string }); ok {
			typ = t.Type()
		}
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "        %s", strings.ReplaceAll(usage, "\n", "\n        "))
		if def := f.DefValue; def != "" && def != "0" && def != "0s" && def != "false" {
			if typ == "string" {
				def = fmt.Sprintf("%q", def)
			}
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
}

// helpHint is the hint printed after a usage mistake.
func helpHint(command string) string {
	return fmt.Sprintf("Run '%s --help' for usage.", command)
}

// parseArgs parses flags that may be interleaved with positional arguments
// (`replay a.json --cluster x b.json`), as operators type them.
//
// -h and --help print fs's usage (fs.Usage, which commonFlags sets to list
// the flags) on fs's output, which commonFlags sets to stdout, and return
// flag.ErrHelp: the
// command then exits 0. Any other mistake returns a usage error naming the
// argument at fault; the flag package's own printing is silenced so that
// the usage is not dumped on every typo.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(out)
				usage()
				return nil, flag.ErrHelp
			}
			return nil, usageError("%s", dashed(err.Error()))
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] != "-" && strings.HasPrefix(args[0], "-") {
			// Parse stopped at "--": everything after it is positional.
			return append(pos, args...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// dashed rewrites the flag package's messages to name flags as --name, the
// way egressd's usage and documentation write them.
func dashed(msg string) string {
	for _, s := range []string{"not defined: -", "for flag -", "needs an argument: -", `" for -`} {
		msg = strings.Replace(msg, s, s+"-", 1)
	}
	return msg
}

// version and commit are set at build time:
//
//	go build -ldflags "-X main.version=v0.2.0 -X main.commit=$(git rev-parse HEAD)"
//
// (make build does). Without -ldflags, commit comes from the VCS stamp that
// go build records in the binary.
var (
	version = "dev"
	commit  = ""
)

// versionLine is what `egressd version` and `egressd --version` print:
// version, commit and Go version on one line, for bug reports and scripts.
func versionLine() string {
	rev, dirty := commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true" && commit == ""
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return fmt.Sprintf("egressd %s (commit %s, %s, %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

package dashboards_test

// What Grafana does to a query before its data source runs it, written down
// so that tests can run the result: template variables (the frontend's
// templateSrv with the PostgreSQL or Prometheus data source's formatting),
// then the SQL engine's global substitutions and the PostgreSQL macro engine
// (grafana pkg/tsdb/sqleng and pkg/tsdb/grafana-postgresql-datasource
// macros.go). Only what the dashboards use is supported; anything else is an
// error, so a new macro or format fails the tests until it is added here.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queryContext is what Grafana knows when it runs a panel's query: the
// dashboard's time range, the interval it computed for the panel (from the
// range and the panel's width), and the values of the template variables.
type queryContext struct {
	From, To time.Time
	// Interval is $__interval as Grafana writes it: "30s", "10m", "1h"...
	Interval string
	// RateInterval is $__rate_interval (Prometheus only).
	RateInterval string
	// Vars are the selected values of each variable; every variable of
	// these dashboards is multi-value, so a selection is a list.
	Vars map[string][]string
	// AllValue is the value a variable with a custom "all" value takes
	// when All is selected (Prometheus instance: ".*"), by name.
	AllValue map[string]string
}

// templateVar is templateSrv's variable syntax: $var, [[var:fmt]] and
// ${var.field:fmt}.
var templateVar = regexp.MustCompile(`\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}`)

// builtin returns the value of a global variable the query runner passes as
// a scoped variable ($__interval and friends), and whether name is one.
func (qc *queryContext) builtin(name string) (string, bool) {
	switch name {
	case "__interval":
		return qc.Interval, true
	case "__interval_ms":
		d, err := parseInterval(qc.Interval)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(d.Milliseconds(), 10), true
	case "__rate_interval":
		return qc.RateInterval, qc.RateInterval != ""
	case "__range":
		return strconv.FormatInt(int64(qc.To.Sub(qc.From).Seconds()), 10) + "s", true
	case "__range_s":
		return strconv.FormatInt(int64(qc.To.Sub(qc.From).Seconds()), 10), true
	case "__range_ms":
		return strconv.FormatInt(qc.To.Sub(qc.From).Milliseconds(), 10), true
	case "__from":
		return strconv.FormatInt(qc.From.UnixMilli(), 10), true
	case "__to":
		return strconv.FormatInt(qc.To.UnixMilli(), 10), true
	}
	return "", false
}

// interpolate replaces template variables as Grafana's frontend does,
// formatting each value with format (the data source's default formatter)
// unless the reference names a format. A reference to an unknown variable
// stays as it is, as in Grafana: the caller checks that no '$' is left.
func (qc *queryContext) interpolate(s string, format func(name string, values []string) string) (string, error) {
	var err error
	out := templateVar.ReplaceAllStringFunc(s, func(m string) string {
		g := templateVar.FindStringSubmatch(m)
		name, fmtID := g[1]+g[2]+g[4], g[3]+g[6]
		if g[5] != "" {
			err = fmt.Errorf("%s: field paths are not supported here", m)
			return m
		}
		if v, ok := qc.builtin(name); ok {
			return v
		}
		values, ok := qc.Vars[name]
		if !ok {
			return m
		}
		if fmtID == "" {
			return format(name, values)
		}
		switch fmtID {
		case "sqlstring":
			return sqlString(values)
		case "raw", "csv":
			return strings.Join(values, ",")
		case "regex":
			return promRegex(values)
		}
		err = fmt.Errorf("%s: format %q is not supported here", m, fmtID)
		return m
	})
	return out, err
}

// sqlString is Grafana's sqlstring format: each value single-quoted, ' doubled
// and " backslash-escaped, joined with commas.
func sqlString(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + strings.ReplaceAll(strings.ReplaceAll(v, "'", "''"), `"`, `\"`) + "'"
	}
	return strings.Join(q, ",")
}

// postgresFormat is the PostgreSQL data source's default formatting of a
// multi-value variable (SqlDatasource.interpolateVariable): quoted literals
// joined with commas.
func postgresFormat(_ string, values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return strings.Join(q, ",")
}

// promFormat is the Prometheus data source's default formatting of a
// multi-value variable (interpolateQueryExpr): the custom all value as it
// is, else each value regex-escaped, several joined as (a|b).
func (qc *queryContext) promFormat(name string, values []string) string {
	if all, ok := qc.AllValue[name]; ok && len(values) == 1 && values[0] == "$__all" {
		return all
	}
	return promRegex(values)
}

var promRegexMeta = regexp.MustCompile(`[$^*{}\[\]+?.()|]`)

func promRegex(values []string) string {
	e := make([]string, len(values))
	for i, v := range values {
		v = strings.ReplaceAll(v, `\`, `\\\\`)
		e[i] = promRegexMeta.ReplaceAllString(v, `\\$0`)
	}
	if len(e) == 1 {
		return e[0]
	}
	return "(" + strings.Join(e, "|") + ")"
}

// expandSQL turns a PostgreSQL panel's rawSql into the statement Grafana
// sends to the database.
func (qc *queryContext) expandSQL(rawSQL string) (string, error) {
	sql, err := qc.interpolate(rawSQL, postgresFormat)
	if err != nil {
		return "", err
	}
	// sqleng.Interpolate: global substitutions.
	iv, err := parseInterval(qc.Interval)
	if err != nil {
		return "", err
	}
	sql = strings.ReplaceAll(sql, "$__interval_ms", strconv.FormatInt(iv.Milliseconds(), 10))
	sql = strings.ReplaceAll(sql, "$__interval", qc.Interval)
	sql = strings.ReplaceAll(sql, "$__unixEpochFrom()", strconv.FormatInt(qc.From.Unix(), 10))
	sql = strings.ReplaceAll(sql, "$__unixEpochTo()", strconv.FormatInt(qc.To.Unix(), 10))
	// The PostgreSQL macro engine.
	sql, err = qc.postgresMacros(sql)
	if err != nil {
		return "", err
	}
	if i := strings.IndexByte(sql, '$'); i >= 0 {
		return "", fmt.Errorf("unexpanded %q in %s", sql[i:min(len(sql), i+30)], sql)
	}
	return sql, nil
}

// expandPromQL turns a Prometheus panel's expr into the query Grafana sends.
func (qc *queryContext) expandPromQL(expr string) (string, error) {
	q, err := qc.interpolate(expr, qc.promFormat)
	if err != nil {
		return "", err
	}
	if i := strings.IndexByte(q, '$'); i >= 0 {
		return "", fmt.Errorf("unexpanded %q in %s", q[i:min(len(q), i+30)], q)
	}
	return q, nil
}

// macroCall is the macro engine's pattern: $name(args), args without ')'.
var macroCall = regexp.MustCompile(`\$([_a-zA-Z0-9]+)\(([^\)]*)\)`)

func (qc *queryContext) postgresMacros(sql string) (string, error) {
	var macroErr error
	out := macroCall.ReplaceAllStringFunc(sql, func(m string) string {
		g := macroCall.FindStringSubmatch(m)
		name := g[1]
		// Before Grafana 5.3 $__timeGroup added AS "time"; a comma right
		// after the call still selects that behaviour.
		if name == "__timeGroup" {
			if i := strings.Index(sql, m); i >= 0 && i+len(m) < len(sql) && sql[i+len(m)] == ',' {
				name = "__timeGroupAlias"
			}
		}
		args := strings.Split(g[2], ",")
		for i := range args {
			args[i] = strings.Trim(args[i], " ")
		}
		res, err := qc.macro(name, args)
		if err != nil && macroErr == nil {
			macroErr = fmt.Errorf("%s: %w", m, err)
		}
		return res
	})
	return out, macroErr
}

func (qc *queryContext) macro(name string, args []string) (string, error) {
	from := qc.From.UTC().Format(time.RFC3339Nano)
	to := qc.To.UTC().Format(time.RFC3339Nano)
	column := func() (string, error) {
		if len(args) == 0 || args[0] == "" {
			return "", fmt.Errorf("missing time column argument for macro %v", name)
		}
		return args[0], nil
	}
	switch name {
	case "__time":
		c, err := column()
		return c + ` AS "time"`, err
	case "__timeEpoch":
		c, err := column()
		return `extract(epoch from ` + c + `) as "time"`, err
	case "__timeFilter":
		c, err := column()
		return fmt.Sprintf("%s BETWEEN '%s' AND '%s'", c, from, to), err
	case "__timeFrom":
		return "'" + from + "'", nil
	case "__timeTo":
		return "'" + to + "'", nil
	case "__timeGroup", "__timeGroupAlias":
		if len(args) < 2 {
			return "", fmt.Errorf("macro %v needs time column and interval and optional fill value", name)
		}
		iv, err := parseInterval(strings.Trim(args[1], `'`))
		if err != nil {
			return "", fmt.Errorf("error parsing interval %v", args[1])
		}
		// A third argument (fill mode) changes how Grafana post-processes
		// the rows, not the SQL.
		s := fmt.Sprintf("floor(extract(epoch from %s)/%v)*%v", args[0], iv.Seconds(), iv.Seconds())
		if name == "__timeGroupAlias" {
			s += ` AS "time"`
		}
		return s, nil
	case "__unixEpochFilter":
		c, err := column()
		return fmt.Sprintf("%s >= %d AND %s <= %d", c, qc.From.Unix(), c, qc.To.Unix()), err
	}
	return "", fmt.Errorf("unknown macro %q", name)
}

// interval is Grafana's interval syntax (gtime.ParseInterval): a number and
// one of ms, s, m, h, d, w, M, y.
var interval = regexp.MustCompile(`^(\d+)(ms|s|m|h|d|w|M|y)$`)

func parseInterval(s string) (time.Duration, error) {
	m := interval.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid interval %q", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("invalid interval %q", s)
	}
	unit := map[string]time.Duration{
		"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
		"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "M": 30 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
	}[m[2]]
	return time.Duration(n) * unit, nil
}

// TestGrafanaExpansion checks the expansion against what Grafana's own
// tests expect of it (sqleng and postgres macros_test.go, the format
// registry and Prometheus escaping tests).
func TestGrafanaExpansion(t *testing.T) {
	t.Parallel()
	from := time.Date(2018, 4, 12, 18, 0, 0, 0, time.UTC)
	qc := &queryContext{From: from, To: from.Add(5 * time.Minute), Interval: "5m",
		Vars: map[string][]string{"ns": {"media", "it's"}}}
	for _, tc := range []struct{ in, want string }{
		{"select $__timeGroupAlias(time_column,'5m')", `select floor(extract(epoch from time_column)/300)*300 AS "time"`},
		{"GROUP BY $__timeGroup(time_column, $__interval)", `GROUP BY floor(extract(epoch from time_column)/300)*300`},
		{"select $__timeGroup(time_column,'5m'), value", `select floor(extract(epoch from time_column)/300)*300 AS "time", value`},
		{"WHERE $__timeFilter(time_column)", `WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'`},
		{"select $__timeFrom(), $__timeTo()", `select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'`},
		{"select $__unixEpochFrom(), $__interval_ms", `select 1523556000, 300000`},
		{"WHERE ns IN (${ns:sqlstring})", `WHERE ns IN ('media','it''s')`},
		{"WHERE ns IN ($ns)", `WHERE ns IN ('media','it''s')`},
	} {
		got, err := qc.expandSQL(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"$__nope(x)", "$unknown", "${ns:percentencode}", "$__timeGroupAlias(c)"} {
		_, err := qc.expandSQL(bad)
		require.Error(t, err, bad)
	}

	require.Equal(t, `'test''value','test\"value2'`, sqlString([]string{"test'value", `test"value2`}))
	require.Equal(t, "", sqlString(nil))
	require.Equal(t, `looking\\*glass`, promRegex([]string{"looking*glass"}))
	require.Equal(t, `(127\\.0\\.0\\.1:9|a\\\\b)`, promRegex([]string{"127.0.0.1:9", `a\b`}))

	qc.RateInterval = "1m"
	qc.Vars = map[string][]string{"instance": {"$__all"}}
	qc.AllValue = map[string]string{"instance": ".*"}
	got, err := qc.expandPromQL(`rate(x{instance=~"$instance"}[$__rate_interval]) + increase(x[$__range])`)
	require.NoError(t, err)
	require.Equal(t, `rate(x{instance=~".*"}[1m]) + increase(x[300s])`, got)
}

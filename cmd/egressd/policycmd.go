package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector"
)

const baselinePolicyUsage = `Usage:
  egressd baseline policy --dir DIR [--out OUT] [--app-label KEY]
                          [--dns-selector KEY=VALUE,...] [--allow-cidr CIDR,...] [--no-cluster-rule]

policy turns the baseline files DIR/<namespace>/<app>.json into one
CiliumNetworkPolicy (cilium.io/v2) per app that allows the app's pods the
destinations of its baseline and nothing else outside the cluster: names as
toFQDNs matchName, patterns as matchPattern, IP addresses as toCIDR, with
their ports. Each policy selects the app's pods by the labels its file's
pods.selector names, and allows DNS through Cilium's DNS proxy (which
toFQDNs needs) to the resolvers its pods asked (pods.dns; DNS pods by
--dns-selector) and, unless --no-cluster-rule, all in-cluster egress. Without --out the policies go to standard output as one YAML stream
(kubectl apply -f -); with --out they are written to OUT/<namespace>/<app>.yaml
and their paths printed. It needs no database.

Apps that get no policy are listed on standard error: unbounded apps, host
apps (namespace "host": host traffic needs a CiliumClusterwideNetworkPolicy
with a nodeSelector, which egressd does not generate), apps whose pods no
labels tell apart (pods.unselectable says why) and apps whose name is too
long to be a label value. If any file cannot be read or made into a
policy, the errors name the files and nothing is printed or written.

A file without pods.selector (written by an older egressd) selects pods by
the label --app-label (default app.kubernetes.io/name) with the app's name as
its value: check that the pods carry it (kubectl get pods -n NAMESPACE -l
KEY=APP). Policies add up: a
policy that still allows the app toEntities world leaves its egress open.

Examples:
  egressd baseline policy --dir gitops/egress-baselines | kubectl apply --dry-run=server -f -
  egressd baseline policy --dir gitops/egress-baselines --out gitops/egress-policies --app-label app
`

// baselinePolicy runs `egressd baseline policy`; args follow "policy".
func (c *CLI) baselinePolicy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd baseline policy", flag.ContinueOnError)
	c.commonFlags(fs) // accepted like every command's, but no database is used
	dir := fs.String("dir", "", "baseline directory (required)")
	out := fs.String("out", "", "write OUT/<namespace>/<app>.yaml instead of printing one YAML stream")
	appLabel := fs.String("app-label", baseline.DefaultAppLabel, "pod label whose value is the app name: the endpointSelector of apps whose file has no pods.selector")
	dnsSelector := fs.String("dns-selector", formatSelector(baseline.DefaultDNSSelector()),
		"comma-separated KEY=VALUE Cilium labels of the cluster DNS pods (k8s: labels the pod; k8s:io.kubernetes.pod.namespace its namespace)")
	allowCIDRs := fs.String("allow-cidr", "", "comma-separated networks outside the cluster every policy allows (LAN, VPC): the collector's internal CIDRs never reach a baseline")
	noClusterRule := fs.Bool("no-cluster-rule", false, "do not allow all in-cluster egress (when other policies govern it)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), baselinePolicyUsage+"\nFlags:\n"); printFlags(fs) }
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("baseline policy: unexpected argument %q", rest[0])
	}
	if *dir == "" {
		return usageError("baseline policy: --dir is required")
	}
	opts := baseline.PolicyOptions{AppLabel: *appLabel, OmitClusterRule: *noClusterRule}
	if err := (baseline.PolicyOptions{AppLabel: *appLabel}).Validate(); err != nil {
		return usageError("baseline policy: --app-label: %s", egressd.ErrorMessage(err))
	}
	if opts.DNSSelector, err = parseSelector(*dnsSelector); err != nil {
		return usageError("baseline policy: --dns-selector: %v", err)
	}
	if err := (baseline.PolicyOptions{DNSSelector: opts.DNSSelector}).Validate(); err != nil {
		return usageError("baseline policy: --dns-selector: %s", egressd.ErrorMessage(err))
	}
	if opts.AllowCIDRs, err = collector.ParseCIDRs(*allowCIDRs); err != nil {
		return usageError("baseline policy: --allow-cidr: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	bs, loadErr := baseline.LoadDir(*dir)
	if bs == nil && loadErr != nil {
		return fmt.Errorf("baseline policy: %w", loadErr)
	}
	set, err := baseline.Policies(bs, opts)
	if errs := c.policyErrors(*dir, loadErr, err); errs > 0 {
		return &exitError_{code: exitError, msg: fmt.Sprintf("baseline policy: %d errors in %s; nothing printed or written", errs, *dir)}
	}
	if len(bs) == 0 {
		fmt.Fprintf(c.Stderr, "baseline policy: no baseline files in %s (want %s/<namespace>/<app>.json)\n", *dir, *dir)
	}
	for _, a := range set.Unbounded {
		fmt.Fprintf(c.Stderr, "baseline policy: no policy for %s: unbounded, it may reach any destination\n", a)
	}
	for _, s := range set.Skipped {
		fmt.Fprintf(c.Stderr, "baseline policy: no policy for %s: %s\n", s.App, s.Reason)
	}

	if *out == "" {
		if err := baseline.WritePolicyStream(c.Stdout, set); err != nil {
			return fmt.Errorf("baseline policy: write standard output: %w", err)
		}
	} else {
		paths, err := baseline.WritePolicies(*out, set)
		for _, p := range paths {
			fmt.Fprintln(c.Stdout, p)
		}
		if err != nil {
			return fmt.Errorf("baseline policy: %w", err)
		}
	}
	fmt.Fprintf(c.Stderr, "baseline policy: %d policies from %d baselines in %s (%d unbounded, %d skipped)\n",
		len(set.Policies), len(bs), *dir, len(set.Unbounded), len(set.Skipped))
	return nil
}

// policyErrors prints each error of loading and generating on its own line,
// naming the baseline file, and returns how many there were.
func (c *CLI) policyErrors(dir string, errs ...error) int {
	n := 0
	for _, err := range errs {
		for _, e := range flattenErrors(err) {
			var pe *baseline.PolicyError
			if errors.As(e, &pe) {
				if path, perr := baseline.Path(dir, pe.App.Namespace, pe.App.Name); perr == nil {
					e = fmt.Errorf("%s: %w", path, pe.Err)
				}
			}
			fmt.Fprintln(c.Stderr, "baseline policy:", e)
			n++
		}
	}
	return n
}

// flattenErrors returns the errors joined in err (errors.Join), or err.
func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// parseSelector parses "k8s:k8s-app=kube-dns,k8s:io.kubernetes.pod.namespace=kube-system".
func parseSelector(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range splitList(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE such as k8s:k8s-app=kube-dns", f)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%q: key %s given twice", s, k)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty: want KEY=VALUE,... such as %s", formatSelector(baseline.DefaultDNSSelector()))
	}
	return out, nil
}

// formatSelector writes labels as parseSelector reads them, sorted.
func formatSelector(m map[string]string) string {
	var fields []string
	for k, v := range m {
		fields = append(fields, k+"="+v)
	}
	slices.Sort(fields)
	return strings.Join(fields, ",")
}

package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

const acceptUsage = `Usage: egressd accept [flags] NAMESPACE/APP DESTINATION[:PORT[/PROTOCOL]]

Accepts a destination for an app: from now on it counts as part of the app's
baseline, and its firing novel-destination alert resolves. Without a port,
every port of the destination is accepted. IPv6 addresses with a port are
written [2001:db8::1]:443. --remove takes an acceptance back. An app egressd
has never seen is an error (exit status 2), so that a typo does not go
unnoticed; --force accepts ahead of the app's first flow.

Examples:
  egressd accept media/recyclarr api.github.com:443
  egressd accept home/home-assistant time.cloudflare.com:123/UDP
  egressd accept --remove media/recyclarr api.github.com:443

Flags:
`

func (c *CLI) accept(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd accept", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	by := fs.String("by", defaultUser(), "who accepts (recorded)")
	remove := fs.Bool("remove", false, "take the acceptance back")
	cluster := fs.String("cluster", "", "accept in this cluster only (default: every cluster)")
	force := fs.Bool("force", false, "accept for an app egressd has not seen yet (ahead of its first flow)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), acceptUsage); printFlags(fs) }
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageError("accept: want NAMESPACE/APP DESTINATION[:PORT[/PROTOCOL]], got %d arguments", len(rest))
	}
	app, err := egressd.ParseApp(rest[0])
	if err != nil {
		return usageError("accept: %v", err)
	}
	app.Cluster = *cluster
	if err := app.Validate(); err != nil {
		return usageError("accept: --cluster: %v", err)
	}
	dst, err := parseDestination(rest[1])
	if err != nil {
		return usageError("accept: %v", err)
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if *remove {
		found, err := db.Unaccept(ctx, app, dst)
		if err != nil {
			return err
		}
		if !found {
			return egressd.Errorf(egressd.ENOTFOUND, "accept --remove: %s was not accepted for %s", dst, app)
		}
		fmt.Fprintf(c.Stdout, "%s no longer accepted for %s\n", dst, app)
		return nil
	}
	if !*force {
		// A typo must not go unnoticed while the real alert keeps firing.
		clusters, err := db.AppClusters(ctx, app.Namespace, app.Name)
		if err != nil {
			return err
		}
		if len(clusters) == 0 || app.Cluster != "" && !slices.Contains(clusters, app.Cluster) {
			return egressd.Errorf(egressd.ENOTFOUND, "unknown app %s; --force to accept ahead of its first flow", app.InCluster())
		}
	}
	if err := db.Accept(ctx, egressd.Accepted{App: app, Destination: dst, By: *by, At: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "accepted %s for %s\n", dst, app)
	return nil
}

// parseDestination parses NAME, NAME:PORT, NAME:PORT/PROTO, IP, [IPv6]:PORT.
// Without a port, every port is meant (0/ANY).
func parseDestination(s string) (egressd.Destination, error) {
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return egressd.Destination{}, fmt.Errorf("destination %q: missing ]", s)
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	d := egressd.Destination{Protocol: egressd.ProtoAny}
	if ip, err := netip.ParseAddr(host); err == nil {
		d.Name = ip.Unmap().String()
	} else if name, ok := egressd.NormalizeName(host); ok {
		d.Name = name
	} else {
		return d, fmt.Errorf("destination %q: want a DNS name or an IP address", host)
	}
	if port != "" {
		n, proto, err := egressd.ParsePort(port)
		if err != nil {
			return d, err
		}
		d.Port, d.Protocol = n, proto
	}
	return d, nil
}

func defaultUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

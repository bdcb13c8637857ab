// Package deploy holds what runs egressd in a cluster, and tests that check
// it without one: the container image (Dockerfile, with ../.dockerignore),
// Kustomize manifests (kustomize/base: ServiceAccount, Deployment, Service,
// ConfigMap, ServiceMonitor, PrometheusRule with egressd's health alerts,
// CiliumNetworkPolicy; kustomize/overlays/example), an Alertmanager
// configuration routing egressd's alerts to Pushover (alertmanager), and the
// GitOps job that exports baselines into a Git repository (gitops).
//
// The package has no Go code of its own. Its tests build every
// kustomization in-process, decode each object strictly into its Go type,
// and check the objects against egressd itself: container arguments against
// the flags of `egressd serve`, rule expressions against the metrics the
// collector, detector and alerts packages register, CiliumNetworkPolicies
// with Cilium's own validator, rules with promtool, the Alertmanager
// configuration with amtool, and the GitOps script against a real
// PostgreSQL and Git repository. README.md explains how to install.
package deploy

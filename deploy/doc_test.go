// Package deploy_test checks what deploy/ ships against the broker itself: the Kubernetes manifests
// (built with kustomize, decoded strictly into the Kubernetes API types, and the broker's
// configuration in them loaded by the broker's own loader), the Prometheus alert rules and the Grafana
// dashboard (every PromQL expression parsed, and every metric, label and label value it names found in
// the broker's registry).
//
// It is a module of its own so that the Kubernetes, kustomize and Prometheus server libraries it
// needs stay out of the broker's go.mod; it builds against the broker's packages through a replace.
package deploy_test

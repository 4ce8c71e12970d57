package deploy_test

import (
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// mountedFile is the text of the file a container of w reads at p, from the ConfigMap mounted at
// p's directory.
func mountedFile(t *testing.T, c *cluster, w workload, ctr corev1.Container, p string) string {
	t.Helper()
	for _, m := range ctr.VolumeMounts {
		if path.Clean(m.MountPath) != path.Dir(p) {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm, ok := find[*corev1.ConfigMap](c, w.ns, v.ConfigMap.Name)
				if !ok {
					t.Fatalf("%s: ConfigMap %s is not in the build", w, v.ConfigMap.Name)
				}
				s, ok := cm.Data[path.Base(p)]
				if !ok {
					t.Fatalf("%s reads %s, but ConfigMap %s has no key %s", w, p, cm.Name, path.Base(p))
				}
				return s
			}
		}
	}
	t.Fatalf("%s reads %s, which no ConfigMap volume provides", w, p)
	return ""
}

// spireConf is a SPIRE configuration file, parsed (SPIRE's files are also valid native HCL 2).
func spireConf(t *testing.T, name, src string) *hclsyntax.Body {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), name, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", name, diags)
	}
	return f.Body.(*hclsyntax.Body)
}

func workloadNamed(t *testing.T, c *cluster, kind, ns, name string) (workload, corev1.Container) {
	t.Helper()
	for _, w := range workloads(c) {
		if w.kind == kind && w.ns == ns && w.name == name {
			return w, w.pod.Spec.Containers[0]
		}
	}
	t.Fatalf("no %s %s/%s in the build", kind, ns, name)
	return workload{}, corev1.Container{}
}

// spireParts are SPIRE's configurations as the build runs them.
type spireParts struct {
	agent, server     *hclsyntax.Body
	agentW            workload
	agentSocket       string // the Workload API socket's path in the agent's container
	agentSocketOnHost string // the host directory that holds it
}

func spireOf(t *testing.T, c *cluster) spireParts {
	t.Helper()
	var s spireParts
	var actr, sctr corev1.Container
	s.agentW, actr = workloadNamed(t, c, "DaemonSet", "spire", "spire-agent")
	sw, sctr := workloadNamed(t, c, "StatefulSet", "spire", "spire-server")
	s.agent = spireConf(t, "agent.conf", mountedFile(t, c, s.agentW, actr, arg(actr.Args, "-config")))
	s.server = spireConf(t, "server.conf", mountedFile(t, c, sw, sctr, arg(sctr.Args, "-config")))
	s.agentSocket = str(block(s.agent, "agent"), "socket_path")
	s.agentSocketOnHost = hostPathAt(s.agentW, path.Dir(s.agentSocket))
	if s.agentSocketOnHost == "" {
		t.Fatalf("the agent's socket_path %q is in no hostPath volume: no other pod can reach it", s.agentSocket)
	}
	return s
}

// checkSPIRE checks that SPIRE's manifests and its configuration files agree: the agent reaches the
// server's Service, bootstraps from the bundle ConfigMap the server's notifier writes, attests with
// the service account the server allows, and shares its socket where the CSI driver reads it.
func checkSPIRE(t *testing.T, c *cluster, withCSI bool) {
	s := spireOf(t, c)
	agent, server := block(s.agent, "agent"), block(s.server, "server")
	if a, b := str(agent, "trust_domain"), str(server, "trust_domain"); a == "" || a != b {
		t.Errorf("agent.conf trust_domain %q and server.conf trust_domain %q differ", a, b)
	}
	// server_address is <service>.<namespace>.
	svcName, ns, _ := strings.Cut(str(agent, "server_address"), ".")
	checkServicePort(t, c, ns, svcName, str(agent, "server_port"), "agent.conf server_address")
	sw, sctr := workloadNamed(t, c, "StatefulSet", "spire", "spire-server")
	if containerPortNumber(sctr, str(server, "bind_port")) == "" {
		t.Errorf("server.conf bind_port %s is not a port of %s", str(server, "bind_port"), sw)
	}
	// The bundle: the notifier writes ConfigMap spire-bundle (key bundle.crt) in its namespace.
	notifier := block(block(block(s.server, "plugins"), "Notifier", "k8sbundle"), "plugin_data")
	bundleNS := str(notifier, "namespace")
	bundle := str(agent, "trust_bundle_path")
	if _, ok := find[*corev1.ConfigMap](c, bundleNS, "spire-bundle"); !ok {
		t.Errorf("the k8sbundle notifier writes ConfigMap %s/spire-bundle, which is not in the build", bundleNS)
	}
	if path.Base(bundle) != "bundle.crt" || !mountsConfigMap(s.agentW, path.Dir(bundle), "spire-bundle") {
		t.Errorf("agent.conf trust_bundle_path %q is not bundle.crt of a spire-bundle ConfigMap volume", bundle)
	}
	// Node attestation: one cluster name, and the server allows the agent's service account.
	cluster := str(block(block(block(s.agent, "plugins"), "NodeAttestor", "k8s_psat"), "plugin_data"), "cluster")
	clusters := attr(block(block(block(s.server, "plugins"), "NodeAttestor", "k8s_psat"), "plugin_data"), "clusters")
	if clusters == cty.NilVal || !clusters.Type().IsObjectType() || !clusters.Type().HasAttribute(cluster) {
		t.Fatalf("server.conf k8s_psat has no cluster %q, the agent's", cluster)
	}
	allowed := clusters.GetAttr(cluster).GetAttr("service_account_allow_list")
	want := s.agentW.ns + ":" + s.agentW.pod.Spec.ServiceAccountName
	found := false
	for it := allowed.ElementIterator(); it.Next(); {
		_, v := it.Element()
		found = found || v.AsString() == want
	}
	if !found {
		t.Errorf("server.conf k8s_psat allows %s, not the agent's service account %s", allowed.GoString(), want)
	}
	if !withCSI {
		return
	}
	if _, ok := find[*storagev1.CSIDriver](c, "", "csi.spiffe.io"); !ok {
		t.Error("no CSIDriver csi.spiffe.io in the build")
	}
	cw, cctr := workloadNamed(t, c, "DaemonSet", "spire", "spiffe-csi-driver")
	if arg(cctr.Args, "-plugin-name") != "csi.spiffe.io" {
		t.Errorf("%s registers as %q, not csi.spiffe.io", cw, arg(cctr.Args, "-plugin-name"))
	}
	if dir := hostPathAt(cw, arg(cctr.Args, "-workload-api-socket-dir")); dir != s.agentSocketOnHost {
		t.Errorf("the CSI driver shares host directory %q, the agent's socket is in %q", dir, s.agentSocketOnHost)
	}
}

func mountsConfigMap(w workload, dir, name string) bool {
	for _, ctr := range w.pod.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			if path.Clean(m.MountPath) != dir {
				continue
			}
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == name {
					return true
				}
			}
		}
	}
	return false
}

func containerPortNumber(ctr corev1.Container, port string) string {
	for _, p := range ctr.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			return port
		}
	}
	return ""
}

// checkServicePort checks that Service ns/name has port.
func checkServicePort(t *testing.T, c *cluster, ns, name, port, what string) {
	t.Helper()
	svc, ok := find[*corev1.Service](c, ns, name)
	if !ok {
		t.Errorf("%s names Service %s/%s, which is not in the build", what, ns, name)
		return
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("%s: Service %s/%s has no port %s", what, ns, name, port)
	}
}

// checkBrokerMeetsSPIRE checks the broker's configuration against the SPIRE it is deployed with:
// the same trust domain, the agent's socket at the path the broker dials, and the server's Service.
func checkBrokerMeetsSPIRE(t *testing.T, c *cluster, socketVia string) {
	s := spireOf(t, c)
	d, ctr := brokerDeployment(t, c)
	w := workload{kind: "Deployment", ns: d.Namespace, name: d.Name, pod: &d.Spec.Template}
	broker := spireConf(t, "broker.hcl", mountedFile(t, c, w, ctr, arg(ctr.Args, "--config")))
	if a, b := str(broker, "trust_domain"), str(block(s.agent, "agent"), "trust_domain"); a != b {
		t.Errorf("broker.hcl trust_domain %q is not SPIRE's %q", a, b)
	}
	sock := strings.TrimPrefix(str(broker, "workload_api_socket"), "unix://")
	if path.Base(sock) != path.Base(s.agentSocket) {
		t.Errorf("the broker dials %s, the agent listens on %s", path.Base(sock), path.Base(s.agentSocket))
	}
	if socketVia == "hostPath" {
		if dir := hostPathAt(w, path.Dir(sock)); dir != s.agentSocketOnHost {
			t.Errorf("the broker's socket directory is host directory %q, the agent's socket is in %q", dir, s.agentSocketOnHost)
		}
	}
	host, port, err := net.SplitHostPort(str(block(broker, "spire_server"), "address"))
	if err != nil {
		t.Fatalf("broker.hcl spire_server.address: %v", err)
	}
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	checkServicePort(t, c, ns, name, port, "broker.hcl spire_server.address")
	if socketVia == "hostPath" {
		if _, ok := find[*storagev1.CSIDriver](c, "", "csi.spiffe.io"); ok {
			t.Error("the hostPath deployment still installs the CSI driver")
		}
		if _, ok := find[*appsv1.DaemonSet](c, "spire", "spiffe-csi-driver"); ok {
			t.Error("the hostPath deployment still runs the CSI driver")
		}
	}
}

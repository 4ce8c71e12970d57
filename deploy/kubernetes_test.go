package deploy_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The kustomizations deploy/kubernetes ships, and what each must hold.
var builds = []struct {
	dir       string
	spire     bool   // SPIRE's server, agent and CSI driver are in it
	socketVia string // how the broker gets the Workload API socket: "csi" or "hostPath"
}{
	{dir: "kubernetes", spire: true, socketVia: "csi"},
	{dir: "kubernetes/broker", socketVia: "csi"},
	{dir: "kubernetes/hostpath", spire: true, socketVia: "hostPath"},
	{dir: "../spire-conf/k8s"},
}

// operatorConfigMaps and operatorSecrets are created by the operator before applying (README,
// "Deploying"), not by kustomize: they hold certificates and keys of the operator's own.
var (
	operatorConfigMaps = []string{"svidbroker/svidbroker-backend-ca"}
	operatorSecrets    = []string{"svidbroker/svidbroker-keys"}
)

// cluster is one kustomize build, decoded.
type cluster struct {
	objects []runtime.Object
}

// build runs kustomize on dir as `kubectl apply -k` would, and decodes every resource into its
// Kubernetes API type, refusing unknown and duplicate fields.
func build(t *testing.T, dir string) *cluster {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	decode := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	c := &cluster{}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := decode.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		c.objects = append(c.objects, obj)
	}
	if t.Failed() {
		t.FailNow()
	}
	return c
}

func find[T runtime.Object](c *cluster, ns, name string) (T, bool) {
	for _, o := range c.objects {
		if v, ok := o.(T); ok {
			m := any(v).(metav1.Object)
			if m.GetName() == name && m.GetNamespace() == ns {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}

func all[T runtime.Object](c *cluster) []T {
	var out []T
	for _, o := range c.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// workload is a controller's pod template.
type workload struct {
	kind, ns, name string
	selector       *metav1.LabelSelector
	pod            *corev1.PodTemplateSpec
}

func (w workload) String() string { return fmt.Sprintf("%s %s/%s", w.kind, w.ns, w.name) }

func workloads(c *cluster) []workload {
	var out []workload
	for _, o := range c.objects {
		switch v := o.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", v.Namespace, v.Name, v.Spec.Selector, &v.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, workload{"StatefulSet", v.Namespace, v.Name, v.Spec.Selector, &v.Spec.Template})
		case *appsv1.DaemonSet:
			out = append(out, workload{"DaemonSet", v.Namespace, v.Name, v.Spec.Selector, &v.Spec.Template})
		}
	}
	return out
}

// selected are the workloads in ns whose pods sel matches.
func selected(t *testing.T, c *cluster, ns string, sel *metav1.LabelSelector) []workload {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	var out []workload
	for _, w := range workloads(c) {
		if w.ns == ns && !s.Empty() && s.Matches(labels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// hasPort reports whether a container of the workload's pods exposes port (a name or a number).
func hasPort(w workload, port intstr.IntOrString) bool {
	for _, ctr := range w.pod.Spec.Containers {
		for _, p := range ctr.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

// TestManifests builds each kustomization and checks what a typo would break without any API
// server noticing: selectors that select nothing, mounts of volumes that do not exist, probes on
// ports no container exposes, references to ConfigMaps, Secrets, service accounts and roles that are
// not there.
func TestManifests(t *testing.T) {
	for _, b := range builds {
		t.Run(b.dir, func(t *testing.T) {
			c := build(t, b.dir)
			checkWorkloads(t, c)
			checkServices(t, c)
			checkSelectors(t, c)
			checkRBAC(t, c)
			if b.socketVia != "" {
				checkBroker(t, c, b.socketVia)
			}
			if b.spire || b.dir == "../spire-conf/k8s" {
				checkSPIRE(t, c, b.socketVia != "hostPath")
			}
			if b.spire {
				checkBrokerMeetsSPIRE(t, c, b.socketVia)
			}
		})
	}
}

func checkWorkloads(t *testing.T, c *cluster) {
	for _, w := range workloads(c) {
		if s, err := metav1.LabelSelectorAsSelector(w.selector); err != nil || s.Empty() || !s.Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s: its selector does not select its own pods (labels %v)", w, w.pod.Labels)
		}
		spec := w.pod.Spec
		if sa := spec.ServiceAccountName; sa != "" {
			if _, ok := find[*corev1.ServiceAccount](c, w.ns, sa); !ok {
				t.Errorf("%s: service account %q is not in the build", w, sa)
			}
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		// A StatefulSet's claim templates are volumes of its pods too.
		if ss, ok := find[*appsv1.StatefulSet](c, w.ns, w.name); ok && w.kind == "StatefulSet" {
			for _, vc := range ss.Spec.VolumeClaimTemplates {
				volumes[vc.Name] = corev1.Volume{Name: vc.Name}
			}
		}
		mounted := map[string]bool{}
		for _, ctr := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, m := range ctr.VolumeMounts {
				mounted[m.Name] = true
				if _, ok := volumes[m.Name]; !ok {
					t.Errorf("%s: container %s mounts volume %q, which the pod does not have", w, ctr.Name, m.Name)
				}
			}
			for _, p := range []*corev1.Probe{ctr.ReadinessProbe, ctr.LivenessProbe, ctr.StartupProbe} {
				if p == nil {
					continue
				}
				var port *intstr.IntOrString
				switch {
				case p.HTTPGet != nil:
					port = &p.HTTPGet.Port
				case p.TCPSocket != nil:
					port = &p.TCPSocket.Port
				}
				if port != nil && !hasPort(workload{pod: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}}}, *port) {
					t.Errorf("%s: container %s probes port %s, which it does not expose", w, ctr.Name, port.String())
				}
			}
		}
		for name, v := range volumes {
			if !mounted[name] {
				t.Errorf("%s: volume %q is mounted by no container", w, name)
			}
			if cm := v.ConfigMap; cm != nil {
				checkConfigMapRef(t, c, w, cm.Name, cm.Items)
			}
			if s := v.Secret; s != nil {
				if !slices.Contains(operatorSecrets, w.ns+"/"+s.SecretName) {
					if _, ok := find[*corev1.Secret](c, w.ns, s.SecretName); !ok {
						t.Errorf("%s: Secret %q is neither in the build nor one the operator creates", w, s.SecretName)
					}
				}
				if len(s.Items) == 0 {
					t.Errorf("%s: Secret volume %q lists no items: the files it holds are unknown", w, name)
				}
			}
		}
	}
}

func checkConfigMapRef(t *testing.T, c *cluster, w workload, name string, items []corev1.KeyToPath) {
	cm, ok := find[*corev1.ConfigMap](c, w.ns, name)
	if !ok {
		if !slices.Contains(operatorConfigMaps, w.ns+"/"+name) {
			t.Errorf("%s: ConfigMap %q is neither in the build nor one the operator creates", w, name)
		} else if len(items) == 0 {
			t.Errorf("%s: ConfigMap %q, which the operator creates, lists no items: the files it holds are unknown", w, name)
		}
		return
	}
	for _, it := range items {
		if _, ok := cm.Data[it.Key]; !ok {
			t.Errorf("%s: ConfigMap %q has no key %q", w, name, it.Key)
		}
	}
}

func checkServices(t *testing.T, c *cluster) {
	for _, s := range all[*corev1.Service](c) {
		pods := selected(t, c, s.Namespace, &metav1.LabelSelector{MatchLabels: s.Spec.Selector})
		if len(pods) == 0 {
			t.Errorf("Service %s/%s: its selector %v selects no pods", s.Namespace, s.Name, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			for _, w := range pods {
				if !hasPort(w, target) {
					t.Errorf("Service %s/%s: port %s targets %s, which %s does not expose", s.Namespace, s.Name, p.Name, target.String(), w)
				}
			}
		}
	}
}

func checkSelectors(t *testing.T, c *cluster) {
	for _, p := range all[*policyv1.PodDisruptionBudget](c) {
		if len(selected(t, c, p.Namespace, p.Spec.Selector)) == 0 {
			t.Errorf("PodDisruptionBudget %s/%s selects no pods", p.Namespace, p.Name)
		}
	}
	for _, np := range all[*networkingv1.NetworkPolicy](c) {
		pods := selected(t, c, np.Namespace, &np.Spec.PodSelector)
		if len(pods) == 0 {
			t.Errorf("NetworkPolicy %s/%s selects no pods", np.Namespace, np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, port := range rule.Ports {
				for _, w := range pods {
					if port.Port != nil && !hasPort(w, *port.Port) {
						t.Errorf("NetworkPolicy %s/%s: port %s, which %s does not expose", np.Namespace, np.Name, port.Port.String(), w)
					}
				}
			}
		}
	}
}

func checkRBAC(t *testing.T, c *cluster) {
	check := func(what string, ref rbacv1.RoleRef, ns string, subjects []rbacv1.Subject) {
		switch ref.Kind {
		case "Role":
			if _, ok := find[*rbacv1.Role](c, ns, ref.Name); !ok {
				t.Errorf("%s: Role %q is not in the build", what, ref.Name)
			}
		case "ClusterRole":
			if _, ok := find[*rbacv1.ClusterRole](c, "", ref.Name); !ok {
				t.Errorf("%s: ClusterRole %q is not in the build", what, ref.Name)
			}
		}
		for _, s := range subjects {
			if s.Kind != "ServiceAccount" {
				continue
			}
			if _, ok := find[*corev1.ServiceAccount](c, s.Namespace, s.Name); !ok {
				t.Errorf("%s: subject ServiceAccount %s/%s is not in the build", what, s.Namespace, s.Name)
			}
		}
	}
	for _, b := range all[*rbacv1.RoleBinding](c) {
		check("RoleBinding "+b.Namespace+"/"+b.Name, b.RoleRef, b.Namespace, b.Subjects)
	}
	for _, b := range all[*rbacv1.ClusterRoleBinding](c) {
		check("ClusterRoleBinding "+b.Name, b.RoleRef, "", b.Subjects)
	}
}

// brokerDeployment is the broker's Deployment and its container.
func brokerDeployment(t *testing.T, c *cluster) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d, ok := find[*appsv1.Deployment](c, "svidbroker", "svidbroker")
	if !ok {
		t.Fatal("no Deployment svidbroker/svidbroker")
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		if ctr.Name == "svidbroker" {
			return d, ctr
		}
	}
	t.Fatal("the Deployment has no container svidbroker")
	return nil, corev1.Container{}
}

func checkBroker(t *testing.T, c *cluster, socketVia string) {
	d, ctr := brokerDeployment(t, c)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("the broker runs %v replicas; a fleet needs at least 2", d.Spec.Replicas)
	}
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("the broker's readiness probe must GET /readyz on the admin port: %+v", p)
	}
	if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("the broker's liveness probe must GET /healthz on the admin port: %+v", p)
	}
	psc, sc := d.Spec.Template.Spec.SecurityContext, ctr.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		t.Error("the broker's pod does not require a non-root user")
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the broker's root file system is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("the broker may escalate privileges")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Error("the broker keeps Linux capabilities")
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("the broker needs CPU and memory requests and a memory limit: %+v", ctr.Resources)
	}
	if d.Spec.Template.Annotations["prometheus.io/port"] != fmt.Sprint(containerPort(ctr, "admin")) {
		t.Errorf("prometheus.io/port %q is not the admin port %d", d.Spec.Template.Annotations["prometheus.io/port"], containerPort(ctr, "admin"))
	}
	var pdb bool
	for _, p := range all[*policyv1.PodDisruptionBudget](c) {
		for _, w := range selected(t, c, p.Namespace, p.Spec.Selector) {
			pdb = pdb || (w.kind == "Deployment" && w.name == d.Name)
		}
	}
	if !pdb {
		t.Error("no PodDisruptionBudget covers the broker")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "spiffe-workload-api" {
			continue
		}
		switch {
		case socketVia == "csi" && (v.CSI == nil || v.CSI.Driver != "csi.spiffe.io" || v.CSI.ReadOnly == nil || !*v.CSI.ReadOnly || v.HostPath != nil):
			t.Errorf("the Workload API volume is not a read-only csi.spiffe.io volume: %+v", v.VolumeSource)
		case socketVia == "hostPath" && (v.HostPath == nil || v.CSI != nil):
			t.Errorf("the Workload API volume is not a hostPath: %+v", v.VolumeSource)
		}
	}
	checkBrokerConfig(t, c, d, ctr)
	checkPolicyPacks(t, c)
}

func containerPort(ctr corev1.Container, name string) int32 {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// hostPathAt is the host directory behind the volume a container of w mounts at dir.
func hostPathAt(w workload, dir string) string {
	for _, ctr := range w.pod.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			if filepath.Clean(m.MountPath) != filepath.Clean(dir) {
				continue
			}
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == m.Name && v.HostPath != nil {
					return v.HostPath.Path
				}
			}
		}
	}
	return ""
}

// arg is the value after flag in args ("-config", "--config").
func arg(args []string, flag string) string {
	for i, a := range args {
		if strings.TrimLeft(a, "-") == strings.TrimLeft(flag, "-") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

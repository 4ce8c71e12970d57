package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	vaultcred "github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
	"github.com/svidbroker/svidbroker/policies"
)

// plugins are the configuration validators cmd/svidbroker wires in (its plugins()).
func plugins() config.Plugins {
	return config.Plugins{
		Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}, "http": proxy.ConfigValidator{}},
		Vault:     vaultcred.ConfigValidator{},
	}
}

// writeVolume lays files out under dir as the kubelet does for ConfigMap and Secret volumes: in a
// hidden timestamped directory, with ..data linking to it and each top-level name linking through
// ..data.
func writeVolume(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := "..2026_01_01_00_00_00.000000001"
	for name, b := range files {
		p := filepath.Join(dir, ts, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	top := map[string]bool{}
	for name := range files {
		top[strings.SplitN(name, "/", 2)[0]] = true
	}
	for name := range top {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// selfSignedPEM is a CA certificate named cn, in PEM.
func selfSignedPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// secretFiles makes the files a Secret of the operator's holds: audit keys as `svidbroker audit
// keygen` writes them, and random keys for the rest.
func secretFiles(t *testing.T, items []corev1.KeyToPath) map[string][]byte {
	t.Helper()
	keys := t.TempDir()
	if err := audit.GenerateKeys(keys, "test"); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, it := range items {
		b, err := os.ReadFile(filepath.Join(keys, it.Key))
		if err != nil {
			b = make([]byte, 32)
			_, _ = rand.Read(b)
		}
		files[it.Path] = b
	}
	return files
}

// mountAll lays out, under root, every volume the broker's container mounts, as the kubelet would,
// and returns the mount paths.
func mountAll(t *testing.T, c *cluster, d *appsv1.Deployment, ctr corev1.Container, root string) []string {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	var mounts []string
	for _, m := range ctr.VolumeMounts {
		mounts = append(mounts, filepath.Clean(m.MountPath))
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		v := volumes[m.Name]
		switch {
		case v.ConfigMap != nil:
			files := map[string][]byte{}
			if cm, ok := find[*corev1.ConfigMap](c, d.Namespace, v.ConfigMap.Name); ok {
				for k, s := range cm.Data {
					files[k] = []byte(s)
				}
				if len(v.ConfigMap.Items) > 0 {
					picked := map[string][]byte{}
					for _, it := range v.ConfigMap.Items {
						picked[it.Path] = files[it.Key]
					}
					files = picked
				}
			} else {
				// The operator's certificates: the loader reads them, so they must be ones.
				for _, it := range v.ConfigMap.Items {
					files[it.Path] = selfSignedPEM(t, it.Key)
				}
			}
			writeVolume(t, dir, files)
		case v.Secret != nil:
			writeVolume(t, dir, secretFiles(t, v.Secret.Items))
		}
	}
	return mounts
}

// under reports whether p is one of the mount paths or below one.
func under(p string, mounts []string) bool {
	for _, m := range mounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return true
		}
	}
	return false
}

// rebase rewrites every absolute path in the configuration (and unix:// address) to the same path
// under root, and reports each one that no volume of the container provides.
func rebase(t *testing.T, src []byte, root string, mounts []string) []byte {
	t.Helper()
	f, diags := hclwrite.ParseConfig(src, "broker.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var walk func(b *hclwrite.Body, at string)
	walk = func(b *hclwrite.Body, at string) {
		for name, a := range b.Attributes() {
			toks := a.Expr().BuildTokens(nil)
			if len(toks) != 3 || toks[0].Type != hclsyntax.TokenOQuote || toks[1].Type != hclsyntax.TokenQuotedLit || toks[2].Type != hclsyntax.TokenCQuote {
				continue
			}
			lit := string(toks[1].Bytes)
			scheme, p := "", lit
			if rest, ok := strings.CutPrefix(lit, "unix://"); ok {
				scheme, p = "unix://", rest
			}
			if !strings.HasPrefix(p, "/") {
				continue
			}
			check := filepath.Clean(p)
			if scheme != "" {
				check = filepath.Dir(check) // a socket: its directory is the mount
			}
			if !under(check, mounts) {
				t.Errorf("broker.hcl %s%s = %q: no volume of the broker's container is mounted there (mounts: %v)", at, name, lit, mounts)
			}
			b.SetAttributeValue(name, cty.StringVal(scheme+filepath.Join(root, p)))
		}
		for _, blk := range b.Blocks() {
			walk(blk.Body(), at+blk.Type()+".")
		}
	}
	walk(f.Body(), "")
	return f.Bytes()
}

// checkBrokerConfig loads the configuration the broker's container reads, from its ConfigMap,
// with the broker's own loader and plugins, in a file tree laid out from the container's volumes as
// the kubelet lays them out; then loads the mounted policies against its catalog.
func checkBrokerConfig(t *testing.T, c *cluster, d *appsv1.Deployment, ctr corev1.Container) {
	path := arg(ctr.Args, "--config")
	if path == "" {
		t.Fatalf("the broker's container has no --config argument: %v", ctr.Args)
	}
	root := t.TempDir()
	mounts := mountAll(t, c, d, ctr, root)
	src, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatalf("the broker reads --config %s, which no ConfigMap mount provides: %v", path, err)
	}
	cfg, err := config.Parse(path, rebase(t, src, root, mounts), plugins())
	if err != nil {
		t.Fatalf("the broker would not start with %s: %v", path, err)
	}

	// The probes and Prometheus reach the admin listener on the pod's address, on the admin port.
	host, port, _ := net.SplitHostPort(*cfg.Admin.Listen)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("admin.listen %q is loopback: the kubelet's probes cannot reach it", *cfg.Admin.Listen)
	}
	if port != strconv.Itoa(int(containerPort(ctr, "admin"))) {
		t.Errorf("admin.listen %q is not the container's admin port %d", *cfg.Admin.Listen, containerPort(ctr, "admin"))
	}
	// Every target listens on a port the container exposes and the Service forwards.
	svc, ok := find[*corev1.Service](c, d.Namespace, "svidbroker")
	if !ok {
		t.Fatal("no Service svidbroker")
	}
	for _, tg := range cfg.Targets {
		_, p, _ := net.SplitHostPort(tg.Listen)
		n, _ := strconv.Atoi(p)
		name := ""
		for _, cp := range ctr.Ports {
			if cp.ContainerPort == int32(n) {
				name = cp.Name
			}
		}
		if name == "" {
			t.Errorf("target %s listens on %s, which the container does not expose", tg.Name, tg.Listen)
			continue
		}
		forwarded := false
		for _, sp := range svc.Spec.Ports {
			forwarded = forwarded || sp.TargetPort == intstr.FromString(name) || sp.TargetPort == intstr.FromInt32(int32(n))
		}
		if !forwarded {
			t.Errorf("target %s: the Service does not forward to port %s", tg.Name, name)
		}
	}
	// Replicas sharing a PostgreSQL audit store need a chain each: the default, the pod's host name.
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if a := block(file.Body.(*hclsyntax.Body), "audit"); a != nil && *d.Spec.Replicas > 1 {
		if _, set := a.Attributes["chain"]; set {
			t.Error("audit.chain is fixed, so every replica would write one chain: the second would be refused (one writer per chain); leave it out")
		}
	}
	if cfg.Audit == nil || cfg.Audit.Postgres == nil {
		t.Error("the brokers keep no shared audit store: a postgres block in audit is expected")
	}
	if cfg.Policy == nil {
		t.Fatal("no policy block: connections would be decided by allow lists")
	}
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cfg.Catalog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authz.New(authz.Config{Dir: cfg.Policy.Dir, Schema: schema, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Errorf("the mounted policies would be refused: %v", err)
	}
}

// block is the body of the first block of type typ (with the given labels) in body, or nil.
func block(body *hclsyntax.Body, typ string, labels ...string) *hclsyntax.Body {
	if body == nil {
		return nil
	}
	for _, b := range body.Blocks {
		if b.Type == typ && (len(labels) == 0 || strings.Join(b.Labels, "\x00") == strings.Join(labels, "\x00")) {
			return b.Body
		}
	}
	return nil
}

// attr is the value of a constant attribute of body, or cty.NilVal.
func attr(body *hclsyntax.Body, name string) cty.Value {
	if body == nil {
		return cty.NilVal
	}
	a, ok := body.Attributes[name]
	if !ok {
		return cty.NilVal
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal
	}
	return v
}

// str is a constant string attribute of body, or "".
func str(body *hclsyntax.Body, name string) string {
	v := attr(body, name)
	if v == cty.NilVal || !v.Type().Equals(cty.String) || v.IsNull() {
		return ""
	}
	return v.AsString()
}

// checkPolicyPacks checks that the policies ConfigMap holds every policy of policies/packs, as the
// files say: a pack left out of its generator would leave its permits and forbids out of force.
func checkPolicyPacks(t *testing.T, c *cluster) {
	cm, ok := find[*corev1.ConfigMap](c, "svidbroker", "svidbroker-policies")
	if !ok {
		t.Fatal("no ConfigMap svidbroker/svidbroker-policies")
	}
	files, err := filepath.Glob("../policies/packs/*/*.cedar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy packs: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := cm.Data[filepath.Base(f)]; !ok || got != string(b) {
			t.Errorf("ConfigMap svidbroker-policies does not hold %s as it is (key %s)", f, filepath.Base(f))
		}
	}
}

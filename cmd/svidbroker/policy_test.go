package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const maskPolicies = `@id("agents-connect")
permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");

@id("agents-select")
permit (principal in Group::"agents", action == Action::"sql:select", resource in Target::"shop");

@id("agents-session")
@reason("BEGIN and SHOW carry no data")
permit (principal in Group::"agents", action in [Action::"sql:transaction", Action::"sql:utility"], resource == Target::"shop");

@id("agents-clear")
permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop")
when { !resource.tags.contains("pii") && !resource.tags.contains("secret") };

@id("agents-pii-hashed")
@mask("hash")
@reason("agents join on personal data but never read it")
forbid (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop")
when { resource.tags.contains("pii") };
`

// writeBrokerConfig writes a broker configuration whose policy.dir is policyDir, with a catalog and a
// group, and returns its path.
func writeBrokerConfig(t *testing.T, policyDir string) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"
target "shop" {
  protocol = "postgres"
  listen   = "127.0.0.1:15432"
  backend {
    address  = "db.internal:5432"
    database = "shop"
    user     = "svidbroker"
    ca_file  = "` + ca + `"
  }
}
policy {
  dir          = "` + policyDir + `"
  default_mask = "redact"
}
catalog "shop" {
  table "public.customers" {
    column "name" {}
    column "email"   { tags = ["pii"] }
    column "api_key" { tags = ["secret"] }
  }
}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
`
	path := filepath.Join(dir, "broker.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolicyCommandsThroughTheConfig runs the policy commands on a policy directory reached through a
// symbolic link (as the demo's .demo/policies is), finding the directory and the catalog from the
// broker's configuration.
func TestPolicyCommandsThroughTheConfig(t *testing.T) {
	real := t.TempDir()
	if err := os.WriteFile(filepath.Join(real, "p.cedar"), []byte(maskPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	// A test file with no catalog of its own: the configuration's is used.
	tests := `test "agents read customers" {
  principal = "spiffe://example.org/agent/a"
  action    = "sql:select"
  target    = "shop"
  table     = "public.customers"
  expect    = "allow"
}
`
	if err := os.WriteFile(filepath.Join(real, "p.test.hcl"), []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "policies")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cfg := writeBrokerConfig(t, link)
	id := "spiffe://example.org/agent/a"
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"validate a symlinked dir", []string{"policy", "validate", link}, []string{link + ": 5 policies, valid"}},
		{"validate the config's dir", []string{"policy", "validate", "--config", cfg}, []string{link + ": 5 policies, valid"}},
		{"test with the config's catalog", []string{"policy", "test", "--config", cfg}, []string{"ok    " + filepath.Join(link, "p.test.hcl"), "1 passed, 0 failed"}},
		{"can lists statements without tables", []string{"policy", "can", "--config", cfg, id}, []string{
			`may    sql:transaction        Target::"shop"`,
			`may    sql:utility            Target::"shop"`,
			`may    sql:select             Table::"shop/public.customers"`,
		}},
		{"can explains masked columns", []string{"policy", "can", "--config", cfg, id}, []string{
			`masked Column::"shop/public.customers.email"`,
			`strategy hash, from @mask of the deciding policy; forbidden by policy agents-pii-hashed (` + filepath.Join(link, "p.cedar") + `:15): "agents join on personal data but never read it"`,
			`masked Column::"shop/public.customers.api_key"`,
			`strategy redact, the policy block's default_mask (no deciding policy names a @mask); no policy permits reading it in clear (default deny)`,
		}},
		{"explain prints the deciding policy's @reason", []string{"policy", "explain", "--config", cfg, "--principal", id,
			"--action", "column:read-unmasked", "--target", "shop", "--table", "public.customers", "--column", "email"}, []string{
			"why        forbidden by agents-pii-hashed",
			"reason     agents-pii-hashed: agents join on personal data but never read it",
		}},
		{"explain decides a use of a masked column", []string{"policy", "explain", "--config", cfg, "--principal", id,
			"--action", "column:use-masked", "--target", "shop", "--table", "public.customers", "--column", "email",
			"--use", "join", "--equality", "--with-column", "public.customers.email"}, []string{
			"decision   DENY",
			`column:use-masked  Column::"shop/public.customers.email"`,
			"why        no permit matched (default deny)",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output does not contain\n  %s\n%s", w, stdout.String())
				}
			}
		})
	}
	t.Run("name is not listed as masked", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		run([]string{"policy", "can", "--config", cfg, id}, &stdout, &stderr)
		if strings.Contains(stdout.String(), `masked Column::"shop/public.customers.name"`) {
			t.Errorf("a column read in clear is listed as masked:\n%s", stdout.String())
		}
	})
}

// TestPolicySyntaxErrorIsReadable runs `policy validate` on a policy with a missing comma: the user
// sees file:line:col and a sentence.
func TestPolicySyntaxErrorIsReadable(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.cedar")
	src := "@id(\"a\")\npermit (principal, action == Action::\"connect\" resource);\n"
	if err := os.WriteFile(pol, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"policy", "validate", dir}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := pol + `:2:48: syntax error: expected "," but found "resource": is a "," missing before it?`
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr does not contain\n  %s\n%s", want, stderr.String())
	}
}

func TestPolicyCommandMistakes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"validate without a dir", []string{"policy", "validate"}, "give one policy DIR, or --config FILE"},
		{"validate with both", []string{"policy", "validate", "--config", "x.hcl", dir}, "not both"},
		{"can without config", []string{"policy", "can", "spiffe://example.org/a"}, "--config FILE is required"},
		{"explain without its flags", []string{"policy", "explain"}, "--action, --config, --principal, --target required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "Run 'svidbroker policy ") {
				t.Errorf("stderr does not contain %q and what to run:\n%s", tc.want, stderr.String())
			}
		})
	}
}

// TestCanSaysWhenAPolicyFailedToEvaluate: a column masked because a permit policy errored is shown as
// masked by that policy's failure, not as forbidden by it; --json carries the error.
func TestCanSaysWhenAPolicyFailedToEvaluate(t *testing.T) {
	dir := t.TempDir()
	pol := `@id("agents-connect")
permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");

@id("agents-clear-overflow")
permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop")
when { context.time * 9223372036854775807 > 0 };
`
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeBrokerConfig(t, dir)
	can := func(t *testing.T, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append(append([]string{"policy", "can", "--config", cfg}, args...), "spiffe://example.org/agent/a")
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	t.Run("text", func(t *testing.T) {
		out := can(t)
		for _, w := range []string{
			`masked Column::"shop/public.customers.name"`,
			"policy agents-clear-overflow (" + filepath.Join(dir, "p.cedar") + ":4) failed to evaluate (any error denies): integer overflow",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output does not contain\n  %s\n%s", w, out)
			}
		}
		if strings.Contains(out, "forbidden by") {
			t.Errorf("a permit that failed to evaluate is shown as forbidding:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		var got struct {
			Capabilities []struct {
				Action, Resource string
				Errors           []struct{ Policy, Message string }
			}
		}
		out := can(t, "--json")
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		columns := 0
		for _, c := range got.Capabilities {
			if c.Action != "column:read-unmasked" {
				continue
			}
			columns++
			if len(c.Errors) != 1 || c.Errors[0].Policy != "agents-clear-overflow" || !strings.Contains(c.Errors[0].Message, "overflow") {
				t.Errorf("%s: errors %+v, want agents-clear-overflow's", c.Resource, c.Errors)
			}
		}
		if columns != 3 {
			t.Errorf("%d column capabilities, want the catalog's 3:\n%s", columns, out)
		}
	})
}

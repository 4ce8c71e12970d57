package deploy_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

const (
	alertsFile    = "prometheus/alerts.yml"
	dashboardFile = "grafana/svidbroker.json"
	readmeFile    = "../README.md"
)

// TestAlertRules parses the alert rules as Prometheus loads them (unknown fields refused, every
// expression and annotation template checked), and checks each against the broker's registry and
// the README's runbooks.
func TestAlertRules(t *testing.T) {
	s := brokerSeries(t)
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	// rulefmt reads an absent for: as 0s; each rule must say how long its condition holds.
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if _, ok := r["for"]; !ok {
				t.Errorf("alert %v has no for:", r["alert"])
			}
		}
	}
	anchors := readmeAnchors(t)
	used := map[string]bool{}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (record %q)", g.Name, r.Record)
				continue
			}
			for _, p := range checkExpr(r.Expr, s, used) {
				t.Errorf("alert %s: %s", r.Alert, p)
			}
			if sev := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, sev) {
				t.Errorf("alert %s: severity %q; use critical, warning or info", r.Alert, sev)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			rb := r.Annotations["runbook"]
			file, anchor, _ := strings.Cut(rb, "#")
			if file != "README.md" || !anchors[anchor] {
				t.Errorf("alert %s: runbook %q names no heading of README.md", r.Alert, rb)
			}
		}
	}
	// The conditions the operators asked to be told about.
	for _, m := range []string{"svidbroker_svid_expiry_seconds", "svidbroker_trust_bundle_expiry_seconds",
		"svidbroker_audit_store_errors_total", "svidbroker_audit_unflushed_records", "svidbroker_approvals_pending",
		"svidbroker_vault_lease_failures_total", "svidbroker_policy_reloads_total"} {
		if !used[m] {
			t.Errorf("no alert watches %s", m)
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

// grafanaVars replaces the dashboard's variables with values of the same syntactic kind, so that its
// queries parse as Prometheus will receive them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$instance", ".*", "$target", ".*")

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// TestDashboard parses the Grafana dashboard and every query in it, and checks that the queries
// select only what the broker exposes, that its data source is a variable, and that every metric of
// the broker has a panel.
func TestDashboard(t *testing.T) {
	s := brokerSeries(t)
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard needs a title and a uid (got %q, %q)", d.Title, d.UID)
	}
	vars := map[string]bool{}
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		for _, p := range checkExpr(grafanaVars.Replace(m[1]), s, used) {
			t.Errorf("variable %s: %s", v.Name, p)
		}
		if f := s[strings.TrimSpace(strings.SplitN(m[1], "{", 2)[0])]; f != nil && f.labels[m[2]] == nil && !slices.Contains(targetLabels, m[2]) {
			t.Errorf("variable %s: %s has no label %q", v.Name, m[1], m[2])
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be bound to one Prometheus")
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: its data source is not ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			for _, prob := range checkExpr(grafanaVars.Replace(q.Expr), s, used) {
				t.Errorf("panel %q, query %s: %s", p.Title, q.RefID, prob)
			}
			if strings.Contains(grafanaVars.Replace(q.Expr), "$") {
				t.Errorf("panel %q, query %s: a variable the dashboard does not define: %s", p.Title, q.RefID, q.Expr)
			}
		}
	}
	for name, f := range s {
		base := name
		if f.typ.String() == "HISTOGRAM" {
			base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		}
		if strings.HasPrefix(base, "svidbroker_") && !used[base] {
			t.Errorf("no panel shows %s", base)
		}
	}
	if queries == 0 {
		t.Fatal("no queries")
	}
}

// readmeAnchors are the anchors of the README's headings, as GitHub makes them.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

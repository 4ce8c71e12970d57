package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestPolicyReloadInTheBroker edits the running broker's policies: a removed permit takes effect
// within the reload interval, and an invalid set is refused while the last good set keeps deciding.
func TestPolicyReloadInTheBroker(t *testing.T) {
	s, _ := shared(t)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-reload", Binary: brokerBin})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	if out, err := psql(t, b, f, nil, "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("analyst refused under the packs: %q %v", out, err)
	}
	path := filepath.Join(b.PolicyDir, "analyst", "analyst.cedar")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	until := func(want func(out string, err error) bool) (string, error) {
		var out string
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			if out, err = psql(t, b, f, nil, "SELECT 1"); want(out, err) {
				break
			}
		}
		return out, err
	}

	// An invalid edit is refused; the analyst keeps its access.
	if err := os.WriteFile(path, append(orig, []byte("\n@id(\"broken\") permit (principal, action, resource) when { principal.nope };\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // three reload intervals
	if out, err := psql(t, b, f, nil, "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("an invalid policy edit changed decisions: %q %v", out, err)
	}
	log, _ := os.ReadFile(filepath.Join(s.LogDir, "svidbroker-reload.log"))
	if !strings.Contains(string(log), "policy set refused") || !strings.Contains(string(log), `@id(\"broken\")`) {
		t.Fatalf("the broker's log does not report the refused set and the policy's @id")
	}

	// A valid edit that drops the analyst's connect permit takes effect.
	edited := strings.Replace(string(orig), `@id("analyst-connect")`+"\npermit", `@id("analyst-connect")`+"\nforbid", 1)
	if edited == string(orig) {
		t.Fatal("test setup: analyst-connect not found")
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := until(func(_ string, err error) bool { return err != nil })
	if err == nil || !strings.Contains(out, "denied by policy analyst-connect") {
		t.Fatalf("after forbidding: %q %v", out, err)
	}
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := until(func(out string, err error) bool { return err == nil }); err != nil {
		t.Fatalf("after restoring: %q %v", out, err)
	}
}

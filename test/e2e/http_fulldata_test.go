package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestHTTPFullDataRecordsMaskedBodies: with audit data = "full", a request whose decision says
// @record("full") (support's reads) has its response body recorded as the agent received it,
// masked; the clear values are in no record. The analyst's reads (@record("metadata")) record no
// body. The chain verifies.
func TestHTTPFullDataRecordsMaskedBodies(t *testing.T) {
	h := httpShared(t)
	b, listen, err := startAPIBroker(t.Context(), h.s, "svidbroker-http-full", stack.BrokerOptions{AuditData: "full"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Error(err)
		}
	})
	full := &httpStack{s: h.s, b: b, api: h.api, vault: h.vault, listen: listen}
	rows := []customerRow{h.customer(t, 1), h.customer(t, 2)}
	sup := full.do(t, full.httpClient(t, stack.PersonaSupport), "GET", "/v1/customers?limit=2", nil, "")
	if sup.status != http.StatusOK {
		t.Fatalf("support: %s", sup)
	}
	ana := full.do(t, full.httpClient(t, stack.PersonaAnalyst), "GET", "/v1/customers/1", nil, "")
	if ana.status != http.StatusOK {
		t.Fatalf("analyst: %s", ana)
	}
	supportID, analystID := mustPersonaID(t, h.s, stack.PersonaSupport), mustPersonaID(t, h.s, stack.PersonaAnalyst)
	sessions := map[string]string{}
	for _, id := range []string{supportID, analystID} {
		sessions[id] = full.waitRecord(t, "the request of "+id, func(r audit.Record) bool {
			return r.Kind == audit.KindStatement && r.SPIFFEID == id
		}).Session
	}
	var supportResult, analystResult *audit.Record
	for deadline := time.Now().Add(20 * time.Second); (supportResult == nil || analystResult == nil) && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, r := range full.httpRecords(t) {
			if r.Kind != audit.KindResult {
				continue
			}
			switch r.Session {
			case sessions[supportID]:
				supportResult = &r
			case sessions[analystID]:
				analystResult = &r
			}
			for _, row := range rows {
				for _, v := range []string{row.Email, row.SSN} {
					if strings.Contains(r.Detail["body"], v) || strings.Contains(r.Detail["masked"], v) {
						t.Fatalf("a recorded body holds the clear value of a masked field: %v", r.Detail)
					}
				}
			}
		}
	}
	if supportResult == nil || analystResult == nil {
		t.Fatalf("result records: support %v, analyst %v", supportResult, analystResult)
	}
	if strings.TrimSpace(supportResult.Detail["body"]) != strings.TrimSpace(sup.body) {
		t.Errorf("support's recorded body %q, want what support received %q", supportResult.Detail["body"], sup.body)
	}
	if !strings.Contains(supportResult.Detail["masked"], "$.items[*].email=partial") {
		t.Errorf("support's result record names masked fields %q", supportResult.Detail["masked"])
	}
	if _, ok := analystResult.Detail["body"]; ok {
		t.Errorf("the analyst's @record(\"metadata\") read recorded its body: %v", analystResult.Detail)
	}
	if out, err := execOut(t, brokerBin, "audit", "verify", "--dir", b.AuditDir, "--chain", b.Chain,
		"--mac-key", b.AuditKeys+"/"+audit.MACKeyFile); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

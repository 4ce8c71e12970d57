package proxy

import "testing"

func TestRequestFingerprintBindsPathQueryAndBody(t *testing.T) {
	base := requestFingerprint("POST /v1/refunds", "POST /v1/refunds", []byte(`{"order_id":7,"amount":150}`))
	if again := requestFingerprint("POST /v1/refunds", "POST /v1/refunds", []byte(`{"order_id":7,"amount":150}`)); again != base {
		t.Fatalf("the same request: %s, then %s", base, again)
	}
	for name, fp := range map[string]string{
		"another body":  requestFingerprint("POST /v1/refunds", "POST /v1/refunds", []byte(`{"order_id":7,"amount":151}`)),
		"another query": requestFingerprint("POST /v1/refunds", "POST /v1/refunds?x=1", []byte(`{"order_id":7,"amount":150}`)),
		"another route": requestFingerprint("POST /v2/refunds", "POST /v1/refunds", []byte(`{"order_id":7,"amount":150}`)),
		// The separator keeps the text's end from passing for the body's start.
		"text and body shifted": requestFingerprint("POST /v1/refunds", "POST /v1/refunds{", []byte(`"order_id":7,"amount":150}`)),
	} {
		if fp == base {
			t.Errorf("%s has the same fingerprint", name)
		}
	}
	if a, b := requestFingerprint("DELETE /v1/orders/{id}", "DELETE /v1/orders/5", nil), requestFingerprint("DELETE /v1/orders/{id}", "DELETE /v1/orders/6", nil); a == b {
		t.Error("deleting order 5 and order 6 share a fingerprint")
	}
}

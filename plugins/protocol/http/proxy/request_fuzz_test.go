package proxy

import (
	"encoding/json"
	"testing"
)

var refundBody = map[string]string{"order_id": "Long", "amount": "Long", "reason": "String", "urgent": "Bool"}

// FuzzParseBody holds the request body check to encoding/json's reading: a body it accepts decodes
// to the same members with the same values, and the body forwarded (the members written again) is
// accepted and read the same way.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{
		`{"order_id":7,"amount":300,"reason":"late"}`, `{"amount":1,"amount":2}`, `{"reason":"\u0041\ud800"}`,
		`{"urgent":true}`, `{"amount":1e3}`, `{"amount":-9223372036854775808}`, `{"r\u0065ason":"x"}`, `{} `, `{"amount":01}`,
		"{\"reason\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		members, err := parseBody(raw, refundBody)
		if err != nil {
			return
		}
		var ref map[string]any
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", raw, err)
		}
		if len(ref) != len(members) {
			t.Fatalf("%q: %d members, encoding/json reads %d", raw, len(members), len(ref))
		}
		for k, v := range members {
			switch v := v.(type) {
			case int64:
				if f, ok := ref[k].(float64); !ok || f != float64(v) {
					t.Fatalf("%q: %s = %d, encoding/json reads %v", raw, k, v, ref[k])
				}
			default:
				if ref[k] != v {
					t.Fatalf("%q: %s = %v, encoding/json reads %v", raw, k, v, ref[k])
				}
			}
		}
		out, err := json.Marshal(members)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseBody(out, refundBody)
		if err != nil || len(again) != len(members) {
			t.Fatalf("the forwarded body %q is read as %v, %v", out, again, err)
		}
		for k, v := range members {
			if again[k] != v {
				t.Fatalf("the forwarded body %q changed %s", out, k)
			}
		}
	})
}

package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRoleMethods(t *testing.T) {
	for _, tc := range []struct {
		role, method string
		want         bool
	}{
		{"api-read", "GET", true},
		{"api-read", "DELETE", false},
		{"api-read", "POST", false},
		{"api-write", "GET", true},
		{"api-write", "POST", true},
		{"api-write", "DELETE", true},
		{"api-write", "PUT", false},
		{"shop-admin", "GET", false}, // a role the API does not know allows nothing
	} {
		if got := allows(tc.role, tc.method); got != tc.want {
			t.Errorf("allows(%q, %q) = %v, want %v", tc.role, tc.method, got, tc.want)
		}
	}
}

func TestParseLimit(t *testing.T) {
	for q, want := range map[string]int{"": defaultLimit, "limit=1": 1, "limit=100": 100} {
		if got, err := parseLimit(q); err != nil || got != want {
			t.Errorf("parseLimit(%q) = %d, %v; want %d", q, got, err, want)
		}
	}
	for q, errText := range map[string]string{
		"limit=0": "from 1 to", "limit=101": "from 1 to", "limit=x": "from 1 to", "limit=-1": "from 1 to",
		"limit=1&limit=2": "more than once", "offset=3": `unknown query parameter "offset"`, "limit=%zz": "malformed",
		// One number, one spelling: a policy naming limit=5 names every request for five rows.
		"limit=05": "without a sign or leading zeros", "limit=%2B5": "without a sign or leading zeros",
	} {
		if _, err := parseLimit(q); err == nil || !strings.Contains(err.Error(), errText) {
			t.Errorf("parseLimit(%q) = %v, want an error mentioning %q", q, err, errText)
		}
	}
}

func TestDecodeRefund(t *testing.T) {
	rf, err := decodeRefund([]byte(`{"order_id": 10, "amount": 250, "reason": "damaged"}`))
	if err != nil || rf != (refund{OrderID: 10, Amount: 250, Reason: "damaged"}) {
		t.Fatalf("decodeRefund = %+v, %v", rf, err)
	}
	for body, errText := range map[string]string{
		`{"order_id": 10, "amount": 250, "reason": "x", "admin": true}`: `unknown field "admin"`,
		`{"order_id": "10", "amount": 250, "reason": "x"}`:              "order_id must be an integer",
		`{"order_id": 10, "amount": 2.5, "reason": "x"}`:                "amount must be an integer",
		`{"order_id": 10, "amount": 250}`:                               "reason must be",
		`{"order_id": 0, "amount": 250, "reason": "x"}`:                 "order_id must be a positive",
		`{"order_id": 10, "amount": -5, "reason": "x"}`:                 "amount must be from 1",
		`{"order_id": 10, "amount": 250, "reason": "x"} {}`:             "more than one JSON value",
		`[1, 2]`:   "not a JSON object",
		`not json`: "not a JSON object",
		`{"order_id": 10, "amount": 250, "reason": "` + strings.Repeat("é", maxReasonRunes+1) + `"}`: "at most 500",
	} {
		if _, err := decodeRefund([]byte(body)); err == nil || !strings.Contains(err.Error(), errText) {
			t.Errorf("decodeRefund(%.60q) = %v, want an error mentioning %q", body, err, errText)
		}
	}
}

// FuzzDecodeRefund checks that whatever decodeRefund accepts is within the documented bounds.
func FuzzDecodeRefund(f *testing.F) {
	for _, s := range []string{
		`{"order_id": 10, "amount": 250, "reason": "damaged"}`,
		`{"order_id": 10, "amount": 250, "reason": "x"} {}`,
		`{"order_id": 1e3, "amount": 1, "reason": "\u00e9"}`,
		`{"ORDER_ID": 10, "amount": 250, "reason": "case"}`,
		`{"order_id": 10, "order_id": -1, "amount": 1, "reason": "dup"}`,
		``, `null`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rf, err := decodeRefund(body)
		if err != nil {
			return
		}
		if rf.OrderID <= 0 || rf.Amount <= 0 || rf.Amount > maxAmount || rf.Reason == "" ||
			!utf8.ValidString(rf.Reason) || utf8.RuneCountInString(rf.Reason) > maxReasonRunes {
			t.Fatalf("accepted out-of-bounds refund %+v from %q", rf, body)
		}
	})
}

// TestPathIDOneSpelling: an id is decimal digits without a sign or leading zeros, so that the id a
// policy in front of the API names (as text) is the only spelling of that row.
func TestPathIDOneSpelling(t *testing.T) {
	for v, want := range map[string]int64{"1": 1, "21": 21, "2147483647": 2147483647} {
		r := httptest.NewRequest("GET", "/v1/orders/x", nil)
		r.SetPathValue("id", v)
		w := httptest.NewRecorder()
		if got, ok := pathID(w, r, "id"); !ok || got != want {
			t.Errorf("pathID(%q) = %d, %v; want %d", v, got, ok, want)
		}
	}
	for _, v := range []string{"021", "+21", "-21", "0", "00", "21.0", " 21", "2147483648", "0x15", "1_0"} {
		r := httptest.NewRequest("GET", "/v1/orders/x", nil)
		r.SetPathValue("id", v)
		w := httptest.NewRecorder()
		if got, ok := pathID(w, r, "id"); ok || w.Code != http.StatusBadRequest {
			t.Errorf("pathID(%q) = %d, %v (status %d); want 400", v, got, ok, w.Code)
		}
	}
}

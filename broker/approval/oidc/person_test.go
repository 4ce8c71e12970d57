package oidc

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestClaimsPerson(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		groups  []string
		err     string
	}{
		{"groups list", `{"email":"a@x","email_verified":true,"groups":["dba","security"]}`, []string{"dba", "security"}, ""},
		{"one group as a string", `{"email":"a@x","email_verified":true,"groups":"dba"}`, []string{"dba"}, ""},
		{"no groups", `{"email":"a@x","email_verified":true}`, []string{}, ""},
		{"null groups", `{"email":"a@x","email_verified":true,"groups":null}`, []string{}, ""},
		{"no email", `{"email_verified":true}`, nil, `no "email" claim`},
		{"empty email", `{"email":"","email_verified":true}`, nil, "non-empty string"},
		{"numeric email", `{"email":5,"email_verified":true}`, nil, "non-empty string"},
		{"unverified", `{"email":"a@x","email_verified":false}`, nil, "email_verified"},
		{"verified missing", `{"email":"a@x"}`, nil, "email_verified"},
		{"verified as a string", `{"email":"a@x","email_verified":"true"}`, nil, "email_verified"},
		{"groups of numbers", `{"email":"a@x","email_verified":true,"groups":[1,2]}`, nil, "list of strings"},
		{"empty group", `{"email":"a@x","email_verified":true,"groups":["dba",""]}`, nil, "empty, overlong"},
		{"not an object", `[1]`, nil, "JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := claimsPerson([]byte(tc.payload), "email", "groups", true)
			if tc.err != "" {
				if !errors.Is(err, ErrClaims) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrClaims containing %q", err, tc.err)
				}
				return
			}
			if err != nil || p.Email != "a@x" || !slices.Equal(p.Groups, tc.groups) {
				t.Fatalf("person %+v, err %v; want groups %v", p, err, tc.groups)
			}
		})
	}
	// Configured claim names are read instead of the defaults.
	p, err := claimsPerson([]byte(`{"upn":"b@x","roles":["approvers"],"email":"ignored@x"}`), "upn", "roles", false)
	if err != nil || p.Email != "b@x" || !slices.Equal(p.Groups, []string{"approvers"}) {
		t.Fatalf("custom claims: %+v, %v", p, err)
	}
	many := `{"email":"a@x","groups":[` + strings.Repeat(`"g",`, maxGroups) + `"g"]}`
	if _, err := claimsPerson([]byte(many), "email", "groups", false); !errors.Is(err, ErrClaims) {
		t.Fatalf("%d groups: err = %v", maxGroups+1, err)
	}
}

func FuzzClaimsPerson(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@x","email_verified":true,"groups":["dba"]}`,
		`{"email":"a@x","groups":"dba"}`,
		`{"email":"a@x","groups":null}`,
		`{"email":1}`, `[]`, `null`, `{"email":"\ud800"}`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, payload []byte, verified bool) {
		p, err := claimsPerson(payload, "email", "groups", verified)
		if err != nil {
			if !errors.Is(err, ErrClaims) {
				t.Fatalf("an error that is not ErrClaims: %v", err)
			}
			return
		}
		if p.Email == "" || len(p.Email) > maxClaimBytes || p.Groups == nil || len(p.Groups) > maxGroups {
			t.Fatalf("accepted an unusable person: %+v", p)
		}
		for _, g := range p.Groups {
			if g == "" || !sane(g) {
				t.Fatalf("accepted group %q", g)
			}
		}
	})
}

func TestAuthorizedParty(t *testing.T) {
	for _, tc := range []struct {
		payload string
		aud     []string
		ok      bool
	}{
		{`{"azp":"console"}`, []string{"console"}, true},
		{`{}`, []string{"console"}, true},
		{`{"azp":"console"}`, []string{"console", "api"}, true},
		{`{}`, []string{"console", "api"}, false},
		{`{"azp":"api"}`, []string{"console", "api"}, false},
		{`{"azp":"api"}`, []string{"console"}, false},
		{`{"azp":5}`, []string{"console"}, false},
	} {
		err := checkAuthorizedParty([]byte(tc.payload), tc.aud, "console")
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrToken)) {
			t.Errorf("%s for %v: err = %v, want ok=%v", tc.payload, tc.aud, err, tc.ok)
		}
	}
}

package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits on what an ID token may say about a person.
const (
	maxGroups     = 256
	maxClaimBytes = 512
)

// Person is an approver, as a verified ID token describes them.
type Person struct {
	// Issuer and Subject identify the person at the provider; together they are the stable key.
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	// Email is the configured email claim, verified unless the configuration allows otherwise.
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	// Groups is the configured groups claim, in the token's order.
	Groups []string `json:"groups"`
	// Expiry is when the ID token expires: a console session must not outlive it.
	Expiry time.Time `json:"expiry"`
}

// ErrClaims is what claimsPerson's errors match: the token is valid but does not describe a person
// the broker can use.
var ErrClaims = errors.New("oidc: the ID token's claims do not describe an approver")

// claimsPerson reads the email, name and groups claims of a verified token's payload. The email
// claim must be a non-empty string; the groups claim a list of strings, one string, or absent (no
// groups). With requireVerified, email_verified must be true.
func claimsPerson(payload []byte, emailClaim, groupsClaim string, requireVerified bool) (Person, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Person{}, fmt.Errorf("%w: the payload is not a JSON object", ErrClaims)
	}
	var p Person
	raw, ok := claims[emailClaim]
	if !ok {
		return Person{}, fmt.Errorf("%w: no %q claim; ask for the \"email\" scope or set email_claim to the claim that holds it", ErrClaims, emailClaim)
	}
	if err := json.Unmarshal(raw, &p.Email); err != nil || p.Email == "" || !sane(p.Email) {
		return Person{}, fmt.Errorf("%w: claim %q must be a non-empty string of at most %d bytes", ErrClaims, emailClaim, maxClaimBytes)
	}
	if requireVerified {
		var verified bool
		if err := json.Unmarshal(claims["email_verified"], &verified); err != nil || !verified {
			return Person{}, fmt.Errorf("%w: email_verified is not true for %s; verify the address at the provider (or set allow_unverified_email)", ErrClaims, p.Email)
		}
	}
	if raw, ok := claims["name"]; ok {
		if err := json.Unmarshal(raw, &p.Name); err != nil || !sane(p.Name) {
			p.Name = ""
		}
	}
	if raw, ok := claims[groupsClaim]; ok && string(raw) != "null" {
		var one string
		if err := json.Unmarshal(raw, &p.Groups); err != nil {
			if json.Unmarshal(raw, &one) != nil {
				return Person{}, fmt.Errorf("%w: claim %q must be a list of strings", ErrClaims, groupsClaim)
			}
			p.Groups = []string{one}
		}
		if len(p.Groups) > maxGroups {
			return Person{}, fmt.Errorf("%w: claim %q lists %d groups, more than %d", ErrClaims, groupsClaim, len(p.Groups), maxGroups)
		}
		for _, g := range p.Groups {
			if g == "" || !sane(g) {
				return Person{}, fmt.Errorf("%w: claim %q holds an empty, overlong or non-UTF-8 group", ErrClaims, groupsClaim)
			}
		}
	}
	if p.Groups == nil {
		p.Groups = []string{}
	}
	return p, nil
}

func sane(s string) bool { return len(s) <= maxClaimBytes && utf8.ValidString(s) }

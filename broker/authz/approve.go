package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// Person is an approver as the approve action's principal sees them (Person::"<email>").
type Person struct {
	Email  string
	Issuer string
	Groups []string
}

// ApprovalRequest is a held request as the approve action's resource (ApprovalRequest::"<id>", a
// child of its Target).
type ApprovalRequest struct {
	ID          string
	Target      string
	Action      string
	Text        string
	Fingerprint string
	SPIFFEID    string
	Owner       string
	Policies    []string
	// Selectors are what SPIRE attested about the caller; Attested is false when SPIRE was not asked.
	Selectors []string
	Attested  bool
}

// PersonUID is a person's entity UID.
func PersonUID(email string) types.EntityUID {
	return types.NewEntityUID("Person", types.String(email))
}

// ApprovalRequestUID is a held request's entity UID.
func ApprovalRequestUID(id string) types.EntityUID {
	return types.NewEntityUID("ApprovalRequest", types.String(id))
}

// approveEntities adds the person and the request to the catalog's entities.
type approveEntities struct {
	static          types.EntityMap
	person, request types.Entity
}

func (e approveEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case e.person.UID:
		return e.person, true
	case e.request.UID:
		return e.request, true
	}
	ent, ok := e.static[uid]
	return ent, ok
}

// Approve decides whether p may approve (or deny) request r: action approve on ApprovalRequest
// r, principal Person p. It returns the decision, and a *Denied error when it is not an allow, which
// names the request and its target. Separation of duties is the caller's to enforce besides.
func (a *Authorizer) Approve(p Person, r ApprovalRequest) (Decision, error) {
	d := a.Engine.Decide(ApproveRequest(a.static, p, r, a.now()))
	if !d.Allow {
		return d, &Denied{Decision: d, What: fmt.Sprintf("approve request %s (%s on target %q) as %s", r.ID, r.Action, r.Target, p.Email),
			Permit: fmt.Sprintf("Action::\"approve\" on requests of %s for this person", TargetUID(r.Target))}
	}
	return d, nil
}

// ApproveRequest is the Cedar request of p approving r at now, with the catalog's entities static
// (Approve's, and `policy test`'s).
func ApproveRequest(static types.EntityMap, p Person, r ApprovalRequest, now time.Time) Request {
	person := types.Entity{UID: PersonUID(p.Email), Attributes: types.NewRecord(types.RecordMap{
		"email": types.String(p.Email), "issuer": types.String(p.Issuer), "groups": stringSet(p.Groups)})}
	res := types.Entity{UID: ApprovalRequestUID(r.ID), Parents: types.NewEntityUIDSet(TargetUID(r.Target)),
		Attributes: types.NewRecord(types.RecordMap{
			"action": types.String(r.Action), "text": types.String(r.Text), "fingerprint": types.String(r.Fingerprint),
			"spiffeId": types.String(r.SPIFFEID), "owner": types.String(r.Owner), "policies": stringSet(r.Policies)})}
	ctx := types.NewRecord(types.RecordMap{"time": types.Long(now.Unix()), "hourUTC": types.Long(now.UTC().Hour()),
		"selectors": stringSet(r.Selectors), "attested": types.Boolean(r.Attested)})
	return Request{Principal: person.UID, Action: Action("approve"), Resource: res.UID, Context: ctx,
		Entities: approveEntities{static: static, person: person, request: res}}
}

// OwnerOf reads an agent's owners from its attested selectors (agent:owner:<email>), sorted and
// joined by commas; "" when none. Each of them is refused as an approver of the agent's requests.
func OwnerOf(selectors []string) string {
	var owners []string
	for _, s := range selectors {
		if v, ok := strings.CutPrefix(s, "agent:owner:"); ok && v != "" && !slices.Contains(owners, v) {
			owners = append(owners, v)
		}
	}
	slices.Sort(owners)
	return strings.Join(owners, ",")
}

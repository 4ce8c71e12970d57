package console

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// ViewAction is the Cedar action that lets a person see a target's sessions in the console.
const ViewAction = "console:view"

// maxViewPolicyBytes bounds a view policy file.
const maxViewPolicyBytes = 1 << 20

// View decides, with Cedar, who may see which target's sessions. The request is
//
//	principal: Person::"<email>"  in Group::"<g>" for each of the ID token's groups,
//	           with email, issuer and groups (a Set of Strings) as attributes
//	action:    Action::"console:view"
//	resource:  Target::"<target name>"
//
// and, Cedar's way, nothing is visible unless a policy permits it. For example:
//
//	permit (principal in Group::"security", action == Action::"console:view", resource);
//	permit (principal, action == Action::"console:view", resource == Target::"shop")
//	  when { principal.groups.contains("dba") };
type View struct {
	policies atomic.Pointer[cedar.PolicySet]
}

// NewView parses Cedar policies text (named name in errors).
func NewView(name string, text []byte) (*View, error) {
	ps, err := cedar.NewPolicySetFromBytes(name, text)
	if err != nil {
		return nil, fmt.Errorf("console: view policies %s: %w", name, err)
	}
	v := &View{}
	v.policies.Store(ps)
	return v, nil
}

// LoadView reads the view policies from a file.
func LoadView(path string) (*View, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("console: view_policy_file: %w", err)
	}
	if fi.Size() > maxViewPolicyBytes {
		return nil, fmt.Errorf("console: view_policy_file %s is larger than %d bytes", path, maxViewPolicyBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("console: view_policy_file: %w", err)
	}
	return NewView(path, b)
}

// PersonUID is a person's Cedar entity.
func PersonUID(p oidc.Person) types.EntityUID {
	return types.NewEntityUID("Person", types.String(p.Email))
}

// MayView reports whether p may see target's sessions. A nil View lets nobody see any.
func (v *View) MayView(p oidc.Person, target string) bool {
	if v == nil || p.Email == "" {
		return false
	}
	ps := v.policies.Load()
	uid := PersonUID(p)
	groups := make([]types.Value, 0, len(p.Groups))
	parents := make([]types.EntityUID, 0, len(p.Groups))
	for _, g := range p.Groups {
		groups = append(groups, types.String(g))
		parents = append(parents, types.NewEntityUID("Group", types.String(g)))
	}
	ents := types.EntityMap{uid: {
		UID: uid, Parents: types.NewEntityUIDSet(parents...),
		Attributes: types.NewRecord(types.RecordMap{
			"email":  types.String(p.Email),
			"issuer": types.String(p.Issuer),
			"groups": types.NewSet(groups...),
		}),
	}}
	d, _ := cedar.Authorize(ps, ents, cedar.Request{
		Principal: uid,
		Action:    types.NewEntityUID("Action", ViewAction),
		Resource:  types.NewEntityUID("Target", types.String(target)),
		Context:   types.NewRecord(nil),
	})
	return d == cedar.Allow
}

package authz

import (
	"iter"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// indexed is a policy set arranged so that a decision evaluates only the policies whose scope can
// match its action and resource type. A policy whose scope names an action (==, in [...]) is filed
// under those actions, otherwise under every action; likewise for the resource type (== or is),
// otherwise under every type. Conditions are not inspected: the index only ever skips policies that
// cannot match, so decisions are the same as with a full scan.
type indexed struct {
	all     []Policy
	buckets map[bucketKey][]int // positions in all, in order
	cache   map[bucketKey]policyList
}

type bucketKey struct {
	action   types.EntityUID  // zero: any action
	resource types.EntityType // "": any type
}

// policyList iterates over a subset of policies; it implements cedar.PolicyIterator.
type policyList []Policy

func (l policyList) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, p := range l {
			if !yield(cedar.PolicyID(p.ID), p.Policy) {
				return
			}
		}
	}
}

func newIndex(all []Policy) *indexed {
	ix := &indexed{all: all, buckets: map[bucketKey][]int{}, cache: map[bucketKey]policyList{}}
	for i, p := range all {
		a := p.Policy.AST()
		actions := scopeActions((*xast.Policy)(a).Action)
		rtypes := scopeTypes((*xast.Policy)(a).Resource)
		for _, act := range actions {
			for _, rt := range rtypes {
				k := bucketKey{action: act, resource: rt}
				ix.buckets[k] = append(ix.buckets[k], i)
			}
		}
	}
	// Precompute the list for every specific pair that some policy names, so that decisions do not
	// allocate; other pairs fall back to merging at decision time.
	for k := range ix.buckets {
		if k.action != (types.EntityUID{}) && k.resource != "" {
			ix.cache[k] = ix.merge(k.action, k.resource)
		}
	}
	return ix
}

// scopeActions lists the actions a policy's action scope names, or the zero UID for "any".
func scopeActions(s xast.IsActionScopeNode) []types.EntityUID {
	switch s := s.(type) {
	case xast.ScopeTypeEq:
		return []types.EntityUID{s.Entity}
	case xast.ScopeTypeInSet:
		return s.Entities
	default: // all, or `in` an action group
		return []types.EntityUID{{}}
	}
}

// scopeTypes lists the resource types a policy's resource scope allows, or "" for "any".
func scopeTypes(s xast.IsResourceScopeNode) []types.EntityType {
	switch s := s.(type) {
	case xast.ScopeTypeEq:
		return []types.EntityType{s.Entity.Type}
	case xast.ScopeTypeIs:
		return []types.EntityType{s.Type}
	case xast.ScopeTypeIsIn:
		return []types.EntityType{s.Type}
	default: // all, or `in` an entity: any type below it
		return []types.EntityType{""}
	}
}

// policies returns the policies that can apply to action on a resource of type rt, in load order.
func (ix *indexed) policies(action types.EntityUID, rt types.EntityType) policyList {
	if l, ok := ix.cache[bucketKey{action, rt}]; ok {
		return l
	}
	return ix.merge(action, rt)
}

func (ix *indexed) merge(action types.EntityUID, rt types.EntityType) policyList {
	var idx []int
	for _, k := range []bucketKey{{action, rt}, {action, ""}, {types.EntityUID{}, rt}, {types.EntityUID{}, ""}} {
		idx = append(idx, ix.buckets[k]...)
	}
	// Keep load order and drop duplicates (a policy is in one bucket per action and type it names).
	seen := make(map[int]bool, len(idx))
	out := make(policyList, 0, len(idx))
	slices.Sort(idx)
	for _, i := range idx {
		if !seen[i] {
			seen[i] = true
			out = append(out, ix.all[i])
		}
	}
	return out
}

package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// pickRole picks the session's credential role. A caller with no role is refused: each role's
// credential:use decision is recorded, and the error says what to fix.
func (c *Core) pickRole(ctx context.Context, s *Session) (authz.RolePick, error) {
	pick, err := c.cfg.PickRole(ctx, s.connect)
	if err == nil {
		return pick, nil
	}
	if no, ok := errors.AsType[*authz.NoRole](err); ok {
		for _, u := range no.Uses {
			s.rec.async(audit.Record{Kind: audit.KindDecision, Remote: s.remote,
				Decision: roleDecision(u.Decision, c.cfg.Target, u.Role),
				Detail:   map[string]string{"credential_role": u.Role, "refused": "no credential role: " + refusalCause(no)}})
		}
	} else {
		// No decision was made (no policy set in force): nothing to cite, and nothing is granted.
		s.rec.async(audit.Record{Kind: audit.KindDecision, Remote: s.remote,
			Decision: &audit.Decision{Action: "credential:use", Resource: fmt.Sprintf("Target::%q", c.cfg.Target)},
			Detail:   map[string]string{"refused": "no credential role could be picked"}})
	}
	s.log.WarnContext(ctx, "connection refused: no credential role", "reason", err)
	return pick, err
}

// refusalCause says, in a few words for the audit log, why no role was picked.
func refusalCause(no *authz.NoRole) string {
	if len(no.Permitted) > 0 {
		return "credential:use permits " + strings.Join(no.Permitted, ", ") + ", which cover no action its policies permit"
	}
	return "credential:use denied for every credential role of the target"
}

// roleDecision is a credential:use decision as the audit log records it.
func roleDecision(d authz.Decision, target, role string) *audit.Decision {
	ad := AuditDecision(d, "credential:use", target)
	ad.Resource = fmt.Sprintf("CredentialRole::%q", target+"/"+role)
	return ad
}

// roleRecord records the credential:use decision that permitted a session's role.
func roleRecord(pick authz.RolePick, target, remote string) audit.Record {
	return audit.Record{Kind: audit.KindDecision, Remote: remote, Decision: roleDecision(pick.Decision, target, pick.Role),
		Detail: map[string]string{"credential_role": pick.Role}}
}

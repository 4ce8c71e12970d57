package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// pickRole picks the session's credential role, when Cedar picks it (Backend.PickRole). A caller
// with no role is refused: each role's credential:use decision is recorded, the client is told what
// to fix, and the error ends the handshake before the session starts. ok is false on refusal.
func (e *Engine) pickRole(ctx context.Context, c authz.Connect, client *pgproto3.Backend, rec recorder, remote string, log *slog.Logger) (authz.RolePick, bool) {
	pick, err := e.cfg.Backend.PickRole(ctx, c)
	if err == nil {
		return pick, true
	}
	var no *authz.NoRole
	if errors.As(err, &no) {
		for _, u := range no.Uses {
			rec.async(audit.Record{Kind: audit.KindDecision, Remote: remote,
				Decision: roleDecision(u.Decision, e.cfg.Target, u.Role),
				Detail:   map[string]string{"refused": "no credential role: " + refusalCause(no)}})
		}
	} else {
		// No decision was made (no policy set in force): nothing to cite, and nothing is granted.
		rec.async(audit.Record{Kind: audit.KindDecision, Remote: remote,
			Decision: &audit.Decision{Action: "credential:use", Resource: fmt.Sprintf("Target::%q", e.cfg.Target)},
			Detail:   map[string]string{"refused": "no credential role could be picked"}})
	}
	log.WarnContext(ctx, "connection refused: no credential role", "reason", err)
	sendFatal(client, "28000", fmt.Sprintf("svidbroker: %s: %v", c.Peer.ID, err))
	return pick, false
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
	ad := auditDecision(d, "credential:use", target)
	ad.Resource = fmt.Sprintf("CredentialRole::%q", target+"/"+role)
	return ad
}

// roleRecord records the credential:use decision that permitted a session's role.
func roleRecord(pick authz.RolePick, target, remote string) audit.Record {
	return audit.Record{Kind: audit.KindDecision, Remote: remote, Decision: roleDecision(pick.Decision, target, pick.Role),
		Detail: map[string]string{"credential_role": pick.Role}}
}

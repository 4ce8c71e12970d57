package audit

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Entry is a record read back from a chain, with its position.
type Entry struct {
	Seq    uint64 `json:"seq"`
	Record Record `json:"record"`
}

// Reader calls its argument for every record of a chain, in order. It does not verify; run Verify or
// VerifyPostgres for that.
type Reader func(func(Entry) error) error

// Files reads a chain kept in files.
func Files(dir, chain string) Reader {
	return func(f func(Entry) error) error {
		return readEntries(fileLines(chainPath(dir, chain)), f)
	}
}

// Read calls f for every record of the chain in dir, in order.
func Read(dir, chain string, f func(Entry) error) error { return Files(dir, chain)(f) }

func readEntries(src lineSource, f func(Entry) error) error {
	return src(func(n int, line []byte) error {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("audit: line %d: %w", n, err)
		}
		var r Record
		if err := json.Unmarshal(e.Rec, &r); err != nil {
			return fmt.Errorf("audit: line %d: %w", n, err)
		}
		return f(Entry{Seq: e.Seq, Record: r})
	})
}

// SessionSummary describes one session found in a chain.
type SessionSummary struct {
	Session    string    `json:"session"`
	SPIFFEID   string    `json:"spiffe_id"`
	Target     string    `json:"target"`
	Start      time.Time `json:"start"`
	Statements int       `json:"statements"`
	// Denied says the connection itself was refused.
	Denied bool `json:"denied"`
	// DeniedStatements counts the statements the broker refused.
	DeniedStatements int  `json:"denied_statements"`
	Ended            bool `json:"ended"`
}

// Refused reports whether anything in the session was refused: its connection or a statement.
func (s SessionSummary) Refused() bool { return s.Denied || s.DeniedStatements > 0 }

// Filter selects sessions; empty fields match everything.
type Filter struct {
	SPIFFEID string
	Target   string
	Since    time.Time
	Until    time.Time
	// Decision is "deny" for sessions in which anything was refused (the connection, or a statement),
	// or "allow" for sessions in which nothing was.
	Decision string
}

// Sessions lists the sessions of a chain that match f, in order of their first record.
func Sessions(read Reader, f Filter) ([]SessionSummary, error) {
	byID := map[string]*SessionSummary{}
	var order []string
	err := read(func(e Entry) error {
		r := e.Record
		if r.Kind == KindChainStart || r.Kind == KindWriteFailed || (r.Kind == KindLease && r.Session == "") {
			return nil // the log's own records and orphaned leases revoked at start, of no session
		}
		s, ok := byID[r.Session]
		if !ok {
			s = &SessionSummary{Session: r.Session, SPIFFEID: r.SPIFFEID, Target: r.Target, Start: r.Time}
			byID[r.Session] = s
			order = append(order, r.Session)
		}
		switch r.Kind {
		case KindStatement:
			s.Statements++
		case KindDenied:
			s.DeniedStatements++
		case KindDecision:
			s.Denied = r.Decision != nil && !r.Decision.Allow
		case KindSessionEnd:
			s.Ended = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []SessionSummary
	for _, id := range order {
		s := byID[id]
		switch {
		case f.SPIFFEID != "" && s.SPIFFEID != f.SPIFFEID,
			f.Target != "" && s.Target != f.Target,
			!f.Since.IsZero() && s.Start.Before(f.Since),
			!f.Until.IsZero() && s.Start.After(f.Until),
			f.Decision == "deny" && !s.Refused(),
			f.Decision == "allow" && s.Refused():
			continue
		}
		out = append(out, *s)
	}
	return out, nil
}

// Timeline returns a session's records in order.
func Timeline(read Reader, session string) ([]Entry, error) {
	var out []Entry
	err := read(func(e Entry) error {
		if e.Record.Session == session {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Format renders one record as a line for people. Control characters are escaped, so a statement
// cannot rewrite the terminal or forge lines. Every line says what happened: a refused statement
// reads "refused", with why and by which policy, never as allowed.
func Format(e Entry) string {
	r := e.Record
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %-13s", r.Time.UTC().Format("15:04:05.000"), e.Seq, r.Kind)
	decision := r.Decision
	switch r.Kind {
	case KindSessionStart:
		fmt.Fprintf(&b, " %s → %s from %s", Escape(r.SPIFFEID), Escape(r.Target), Escape(r.Remote))
		if by := r.Detail["authenticated_by"]; by != "" {
			fmt.Fprintf(&b, " by its %s", Escape(by))
		}
	case KindSessionEnd:
		fmt.Fprintf(&b, " %s", Escape(r.Detail["reason"]))
		if d := r.Detail["duration"]; d != "" {
			fmt.Fprintf(&b, " after %s", Escape(d))
		}
	case KindDecision:
		// A credential:use decision names the role it was about, not only the target.
		what := "to " + Escape(r.Target)
		if role := r.Detail["credential_role"]; role != "" {
			what = "of role " + Escape(role) + " on " + Escape(r.Target)
		}
		if d := r.Decision; d != nil && !d.Allow && r.Detail["refused"] != "" {
			// Refused by something other than a policy (an allow list): no decision to cite.
			fmt.Fprintf(&b, " %s %s refused: %s", Escape(d.Action), what, Escape(r.Detail["refused"]))
			decision = nil
		} else if d != nil {
			fmt.Fprintf(&b, " %s %s %s (decision %s)", Escape(d.Action), what, outcome(d), Escape(d.ID))
			decision = nil
		}
	case KindStatement:
		formatStatement(&b, r.Statement)
	case KindDenied:
		formatStatement(&b, r.Statement)
		formatRefusal(&b, r)
		decision = nil
	case KindApproval:
		formatApproval(&b, r)
		decision = nil
	case KindLease:
		fmt.Fprintf(&b, " %s %s", Escape(r.LeaseID), Escape(r.Detail["event"]))
		if r.Detail["found"] == "at start" {
			b.WriteString(" at start: left by a previous run of the broker")
		}
	case KindResult:
		formatResult(&b, r.Result)
		// What an HTTP response's record adds: the fields masked, a response withheld or cut off.
		if m := r.Detail["masked"]; m != "" {
			fmt.Fprintf(&b, "; masked %s", Escape(m))
		}
		// An MCP result's content kinds ("text,image").
		if c := r.Detail["content"]; c != "" {
			fmt.Fprintf(&b, "; content %s", Escape(c))
		}
		if why := r.Detail["refused"]; why != "" {
			fmt.Fprintf(&b, "; withheld: %s", Escape(why))
		}
		if why := r.Detail["error"]; why != "" {
			fmt.Fprintf(&b, "; %s", Escape(why))
		}
	case KindError:
		fmt.Fprintf(&b, " %s", Escape(r.Error))
	case KindChainStart:
		fmt.Fprintf(&b, " chain %s created", Escape(r.Detail["chain"]))
	case KindWriteFailed:
		fmt.Fprintf(&b, " %s", Escape(describeWriteFailure(r)))
	}
	if d := decision; d != nil {
		fmt.Fprintf(&b, "; %s %s (decision %s)", Escape(d.Action), outcome(d), Escape(d.ID))
	}
	if r.LeaseID != "" && r.Kind != KindLease {
		fmt.Fprintf(&b, " lease %s", Escape(r.LeaseID))
	}
	return b.String()
}

// Verdict says what decided d: the allowing or forbidding policies, a policy that failed to evaluate,
// or, when no policy matched, the default deny.
func Verdict(d *Decision) string {
	policies := Escape(strings.Join(d.Policies, ", "))
	switch {
	case d.Allow && policies == "":
		return "allowed"
	case d.Allow:
		return "allowed by " + policies
	case d.ErrorPolicy != "":
		return "policy " + Escape(d.ErrorPolicy) + " failed to evaluate, which denies"
	case policies != "":
		return "forbidden by " + policies
	default:
		return "no policy permitted it: denied by default"
	}
}

// outcome is "allowed by …" or "refused: " and why.
func outcome(d *Decision) string {
	if d.Allow {
		return Verdict(d)
	}
	return "refused: " + Verdict(d)
}

func formatStatement(b *strings.Builder, st *Statement) {
	if st == nil {
		return
	}
	fmt.Fprintf(b, " [%s] %s", Escape(st.Protocol), Escape(st.Text))
	if len(st.Params) > 0 {
		fmt.Fprintf(b, " params (%s)", Escape(strings.Join(st.Params, ", ")))
	}
	if len(st.Masked) > 0 {
		fmt.Fprintf(b, " masked %s", Escape(strings.Join(st.Masked, ",")))
	}
}

// formatRefusal says why a statement was refused: the reason its record gives and the policies that
// refused it or held it for approval.
func formatRefusal(b *strings.Builder, r Record) {
	fmt.Fprintf(b, "; refused (%s)", Escape(r.Error))
	reason, d := r.Detail["refused"], r.Decision
	switch {
	case strings.HasPrefix(reason, "approval "):
		fmt.Fprintf(b, ": %s", Escape(reason))
		if req := r.Detail["request"]; req != "" {
			fmt.Fprintf(b, ", request %s", Escape(req))
		}
		if d != nil && len(d.Policies) > 0 {
			fmt.Fprintf(b, ", held by %s", Escape(strings.Join(d.Policies, ", ")))
		}
	case d != nil:
		// A policy decided the refusal: what the decision says is why.
		deny := *d
		deny.Allow = false
		fmt.Fprintf(b, ": %s", Verdict(&deny))
	case reason != "":
		fmt.Fprintf(b, ": %s", Escape(reason))
	}
	if d != nil {
		fmt.Fprintf(b, " (decision %s)", Escape(d.ID))
	}
}

// formatApproval renders an approval request's state: held (by the policies that require approval),
// then approved, denied or expired, and by whom, or withdrawn, and why.
func formatApproval(b *strings.Builder, r Record) {
	fmt.Fprintf(b, " request %s", Escape(r.Detail["request"]))
	switch state := r.Detail["state"]; state {
	case "pending":
		b.WriteString(" held for approval")
		if d := r.Decision; d != nil && len(d.Policies) > 0 {
			fmt.Fprintf(b, " by %s", Escape(strings.Join(d.Policies, ", ")))
		}
	case "vote":
		// One person's decision (approval.Desk): who, at which provider, how many approvals are in.
		verb := "denied"
		if r.Detail["vote"] == "approve" {
			verb = "approved"
		}
		fmt.Fprintf(b, " %s by %s (%s), %s of the approvals needed", verb, Escape(r.Detail["approver"]), Escape(r.Detail["issuer"]), Escape(r.Detail["approvals"]))
		if why := r.Detail["reason"]; why != "" {
			fmt.Fprintf(b, ": %s", Escape(why))
		}
		if r.Detail["outcome"] == "approved" {
			fmt.Fprintf(b, "; granted, scope %s until %s", Escape(r.Detail["scope"]), Escape(r.Detail["until"]))
		}
	case "used":
		fmt.Fprintf(b, " granted earlier by %s covered this operation (used grant %s)", Escape(r.Detail["approver"]), Escape(r.Detail["request"]))
	case "notified":
		// A notification's end (approval/notify): which event, to which destination, whether it arrived.
		fmt.Fprintf(b, " %s notification to the %s %s", Escape(r.Detail["event"]), Escape(r.Detail["destination"]), Escape(r.Detail["outcome"]))
		if e := r.Detail["error"]; e != "" {
			fmt.Fprintf(b, ": %s", Escape(e))
		}
	default:
		fmt.Fprintf(b, " %s", Escape(state))
		if a := r.Detail["approver"]; a != "" {
			fmt.Fprintf(b, " by %s", Escape(a))
		}
		if why := r.Detail["reason"]; why != "" {
			fmt.Fprintf(b, ": %s", Escape(why))
		}
	}
}

func formatResult(b *strings.Builder, res *Result) {
	if res == nil {
		return
	}
	unit := "rows"
	if res.Unit != "" {
		unit = res.Unit
	}
	fmt.Fprintf(b, " %s: %d %s, %d bytes", Escape(res.Tag), res.Rows, Escape(unit), res.Bytes)
	if len(res.Columns) > 0 {
		fmt.Fprintf(b, "\n    | %s |", Escape(strings.Join(res.Columns, " | ")))
	}
	for _, row := range res.Data {
		vals := make([]string, len(row))
		for i, v := range row {
			vals[i] = "NULL"
			if v != nil {
				vals[i] = Escape(*v)
			}
		}
		fmt.Fprintf(b, "\n    | %s |", strings.Join(vals, " | "))
	}
	if res.Truncated {
		b.WriteString("\n    (more rows not recorded)")
	}
}

// Escape makes s safe to print: control characters (escape sequences, carriage returns, newlines)
// become visible escapes.
func Escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(r) || r == unicode.ReplacementChar || slices.Contains([]rune{'\u2028', '\u2029'}, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

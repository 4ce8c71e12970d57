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
		return readEntries(func(g func(int, []byte) error) error { return readLines(chainPath(dir, chain), g) }, f)
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
	Denied     bool      `json:"denied"`
	// DeniedStatements counts the statements the broker refused.
	DeniedStatements int  `json:"denied_statements"`
	Ended            bool `json:"ended"`
}

// Filter selects sessions; empty fields match everything.
type Filter struct {
	SPIFFEID string
	Target   string
	Since    time.Time
	Until    time.Time
	// Decision is "allow" or "deny": sessions whose connect decision had that outcome.
	Decision string
}

// Sessions lists the sessions of a chain that match f, in order of their first record.
func Sessions(read Reader, f Filter) ([]SessionSummary, error) {
	byID := map[string]*SessionSummary{}
	var order []string
	err := read(func(e Entry) error {
		r := e.Record
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
			f.Decision == "deny" && !s.Denied,
			f.Decision == "allow" && s.Denied:
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
// cannot rewrite the terminal or forge lines.
func Format(e Entry) string {
	r := e.Record
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %-13s", r.Time.UTC().Format("15:04:05.000"), e.Seq, r.Kind)
	switch r.Kind {
	case KindSessionStart:
		fmt.Fprintf(&b, " %s → %s from %s", Escape(r.SPIFFEID), Escape(r.Target), Escape(r.Remote))
	case KindSessionEnd:
		fmt.Fprintf(&b, " %s after %s", Escape(r.Detail["reason"]), Escape(r.Detail["duration"]))
	case KindStatement, KindDenied:
		fmt.Fprintf(&b, " [%s] %s", r.Statement.Protocol, Escape(r.Statement.Text))
		if len(r.Statement.Params) > 0 {
			fmt.Fprintf(&b, " params (%s)", Escape(strings.Join(r.Statement.Params, ", ")))
		}
		if len(r.Statement.Masked) > 0 {
			fmt.Fprintf(&b, " masked %s", Escape(strings.Join(r.Statement.Masked, ",")))
		}
		if r.Error != "" {
			fmt.Fprintf(&b, " refused (%s)", Escape(r.Error))
		}
	case KindApproval:
		fmt.Fprintf(&b, " request %s %s", Escape(r.Detail["request"]), Escape(r.Detail["state"]))
		if a := r.Detail["approver"]; a != "" {
			fmt.Fprintf(&b, " by %s", Escape(a))
		}
	case KindResult:
		fmt.Fprintf(&b, " %s: %d rows, %d bytes", Escape(r.Result.Tag), r.Result.Rows, r.Result.Bytes)
		if len(r.Result.Columns) > 0 {
			fmt.Fprintf(&b, "\n    | %s |", Escape(strings.Join(r.Result.Columns, " | ")))
		}
		for _, row := range r.Result.Data {
			vals := make([]string, len(row))
			for i, v := range row {
				vals[i] = "NULL"
				if v != nil {
					vals[i] = Escape(*v)
				}
			}
			fmt.Fprintf(&b, "\n    | %s |", strings.Join(vals, " | "))
		}
		if r.Result.Truncated {
			b.WriteString("\n    (more rows not recorded)")
		}
	case KindError:
		fmt.Fprintf(&b, " %s", Escape(r.Error))
	}
	if d := r.Decision; d != nil {
		verdict := "deny"
		if d.Allow {
			verdict = "allow"
		}
		fmt.Fprintf(&b, " decision %s %s %s by %s", d.ID, d.Action, verdict, Escape(strings.Join(d.Policies, ",")))
	}
	if r.LeaseID != "" {
		fmt.Fprintf(&b, " lease %s", Escape(r.LeaseID))
	}
	return b.String()
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

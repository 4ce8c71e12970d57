package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

const (
	maxReasonBytes  = 1024
	maxScopeMinutes = 24 * 60
	maxSelectors    = 64
)

// page is what every template gets.
type page struct {
	Title, Base, Nav, Error, Notice string
	Email, CSRF                     string
	Data                            any
}

func (c *Console) page(x *session, nav, title string) page {
	return page{Title: title, Base: c.base, Nav: nav, Email: x.person.Email, CSRF: x.csrf}
}

// pendingRow is one request on the approvals page, with what the audit log says of its session.
type pendingRow struct {
	approval.Request
	Start *audit.Record
}

func (c *Console) approvals(w http.ResponseWriter, r *http.Request, x *session) {
	p := c.page(x, "approvals", "Pending approvals")
	p.Notice = noticeText(r.URL.Query().Get("done"))
	if c.cfg.Approvals == nil {
		p.Error = "Approvals are not configured on this broker."
		c.render(w, http.StatusOK, "approvals", p)
		return
	}
	reqs, err := c.cfg.Approvals.Pending(r.Context())
	if err != nil {
		p.Error = err.Error()
	}
	rows := make([]pendingRow, 0, len(reqs))
	for _, q := range reqs {
		if c.cfg.View.MayView(x.person, q.Target) {
			rows = append(rows, pendingRow{Request: q, Start: c.sessionStart(q.Session)})
		}
	}
	p.Data = rows
	c.render(w, http.StatusOK, "approvals", p)
}

func noticeText(done string) string {
	switch done {
	case "approved":
		return "Approved: the held operation goes on."
	case "denied":
		return "Denied: the held operation is refused."
	}
	return ""
}

// sessionStart is the session_start record of a session, if the audit log is readable and has it.
func (c *Console) sessionStart(id string) *audit.Record {
	if c.cfg.Audit == nil || id == "" {
		return nil
	}
	var found *audit.Record
	errStop := errors.New("found")
	_ = c.cfg.Audit(func(e audit.Entry) error {
		if e.Record.Session == id && e.Record.Kind == audit.KindSessionStart {
			rec := e.Record
			found = &rec
			return errStop
		}
		return nil
	})
	return found
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, x *session) {
	if c.cfg.Approvals == nil {
		http.Error(w, "console: approvals are not configured on this broker", http.StatusNotFound)
		return
	}
	id := r.PathValue("id")
	approve, reason, scope, err := parseDecision(r.PostForm)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// A person decides only the requests of targets whose sessions Cedar lets them see; the store then
	// applies its own rules (who may approve, separation of duties).
	if q, gerr := c.cfg.Approvals.Get(r.Context(), id); gerr == nil && !c.cfg.View.MayView(x.person, q.Target) {
		c.cfg.Logger.WarnContext(r.Context(), "console: decision refused: console:view", "request", id, "email", x.person.Email, "target", q.Target)
		p := c.page(x, "approvals", "Decision refused")
		p.Error = "No such pending request, or you may not see its target's sessions (console:view)."
		c.render(w, http.StatusNotFound, "error", p)
		return
	}
	_, err = c.cfg.Approvals.Decide(r.Context(), id, x.person, approve, reason, scope)
	verdict := "denied"
	if approve {
		verdict = "approved"
	}
	c.cfg.Logger.InfoContext(r.Context(), "console: decision", "request", id, "email", x.person.Email,
		"verdict", verdict, "scope", scope.Kind, "for", scope.For, "reason", reason, "error", err)
	if err != nil {
		p := c.page(x, "approvals", "Decision refused")
		p.Error = err.Error()
		status := http.StatusConflict
		if errors.Is(err, approval.ErrUnknown) {
			status = http.StatusNotFound
		}
		c.render(w, status, "error", p)
		return
	}
	http.Redirect(w, r, c.base+"/approvals?done="+verdict, http.StatusSeeOther)
}

// parseDecision reads the decision form: decision ("approve" or "deny"), reason (at most 1024
// bytes) and scope, with minutes (1 to 1440) for a fingerprint or session scope.
func parseDecision(f url.Values) (approve bool, reason string, scope Scope, err error) {
	switch f.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		return false, "", Scope{}, errors.New(`console: the form's decision must be "approve" or "deny"`)
	}
	reason = strings.TrimSpace(f.Get("reason"))
	if len(reason) > maxReasonBytes || !utf8.ValidString(reason) {
		return false, "", Scope{}, errors.New("console: the reason must be UTF-8 text of at most 1024 bytes")
	}
	scope.Kind = f.Get("scope")
	switch scope.Kind {
	case ScopeOnce:
	case ScopeFingerprint, ScopeSession:
		m, err := strconv.Atoi(f.Get("minutes"))
		if err != nil || m < 1 || m > maxScopeMinutes {
			return false, "", Scope{}, errors.New("console: minutes must be a whole number from 1 to 1440 for a fingerprint or session scope")
		}
		scope.For = time.Duration(m) * time.Minute
	default:
		return false, "", Scope{}, errors.New(`console: scope must be "once", "fingerprint" or "session"`)
	}
	return approve, reason, scope, nil
}

// summary is one session on the sessions page.
type summary struct {
	Session, SPIFFEID, Target          string
	Start, Last                        time.Time
	Operations, Refusals, Masks, Holds int
	Ended                              bool
}

// summaries reads the sessions of the chain, in order of their start.
func summaries(read audit.Reader) ([]*summary, error) {
	byID := map[string]*summary{}
	var order []*summary
	err := read(func(e audit.Entry) error {
		r := e.Record
		if r.Session == "" || r.Kind == audit.KindChainStart || r.Kind == audit.KindWriteFailed {
			return nil
		}
		s, ok := byID[r.Session]
		if !ok {
			s = &summary{Session: r.Session, SPIFFEID: r.SPIFFEID, Target: r.Target, Start: r.Time}
			byID[r.Session] = s
			order = append(order, s)
		}
		s.Last = r.Time
		switch r.Kind {
		case audit.KindStatement:
			s.Operations++
			if r.Statement != nil {
				s.Masks += len(r.Statement.Masked)
			}
		case audit.KindDenied:
			s.Refusals++
		case audit.KindDecision:
			if r.Decision != nil && !r.Decision.Allow {
				s.Refusals++
			}
		case audit.KindSessionEnd:
			s.Ended = true
		}
		return nil
	})
	return order, err
}

type sessionsData struct {
	Live, Ended []*summary
	Hidden      int
}

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request, x *session) {
	p := c.page(x, "sessions", "Sessions")
	if c.cfg.Audit == nil {
		p.Error = "No audit log is configured for the console."
		c.render(w, http.StatusOK, "sessions", p)
		return
	}
	all, err := summaries(c.cfg.Audit)
	if err != nil {
		p.Error = "The audit log could not be read: " + err.Error()
	}
	var d sessionsData
	for _, s := range slices.Backward(all) {
		switch {
		case !c.cfg.View.MayView(x.person, s.Target):
			d.Hidden++
		case s.Ended:
			d.Ended = append(d.Ended, s)
		default:
			d.Live = append(d.Live, s)
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "sessions", p)
}

type replayData struct {
	Session  string
	Target   string
	Report   *audit.Report
	Proven   uint64
	Entries  []replayRow
	Verified bool
}

type replayRow struct {
	Seq      uint64
	Line     string
	Decision bool
}

// replay shows a session's records after verifying the chain; a chain that does not verify is not
// shown, only its problems.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, x *session) {
	id := r.PathValue("id")
	p := c.page(x, "sessions", "Replay of session "+id)
	if c.cfg.Audit == nil {
		p.Error = "No audit log is configured for the console."
		c.render(w, http.StatusNotFound, "error", p)
		return
	}
	tl, err := audit.Timeline(c.cfg.Audit, id)
	if err != nil || len(tl) == 0 || !c.cfg.View.MayView(x.person, targetOf(tl)) {
		// An unknown session and one the person may not see look the same.
		p.Error = "No such session, or you may not see it."
		c.render(w, http.StatusNotFound, "error", p)
		return
	}
	d := replayData{Session: id, Target: targetOf(tl)}
	d.Report, err = c.cfg.Verify(r.Context())
	switch {
	case err != nil:
		p.Error = "The audit chain could not be verified, so the session is not shown: " + err.Error()
	case !d.Report.OK():
		p.Error = "The audit chain does not verify, so the session is not shown."
	default:
		d.Verified = true
		d.Proven, _ = d.Report.Proven()
		for _, e := range tl {
			d.Entries = append(d.Entries, replayRow{Seq: e.Seq, Line: audit.Format(e), Decision: e.Record.Decision != nil})
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "replay", p)
}

func targetOf(tl []audit.Entry) string {
	for _, e := range tl {
		if e.Record.Target != "" {
			return e.Record.Target
		}
	}
	return ""
}

type canData struct {
	SPIFFEID, Selectors string
	Caps                []authz.Capability
	Asked               bool
}

func (c *Console) can(w http.ResponseWriter, r *http.Request, x *session) {
	p := c.page(x, "can", "What may this agent do")
	q := r.URL.Query()
	d := canData{SPIFFEID: strings.TrimSpace(q.Get("spiffe_id")), Selectors: strings.TrimSpace(q.Get("selectors"))}
	p.Data = &d
	if d.SPIFFEID == "" {
		c.render(w, http.StatusOK, "can", p)
		return
	}
	if c.cfg.Authorizer == nil {
		p.Error = "No policy is configured on this broker."
		c.render(w, http.StatusOK, "can", p)
		return
	}
	id, err := spiffeid.FromString(d.SPIFFEID)
	if err != nil {
		p.Error = "The SPIFFE ID is not valid: " + err.Error()
		c.render(w, http.StatusBadRequest, "can", p)
		return
	}
	var sel []string
	for s := range strings.FieldsFuncSeq(d.Selectors, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		sel = append(sel, s)
	}
	if len(sel) > maxSelectors {
		p.Error = "At most 64 selectors."
		c.render(w, http.StatusBadRequest, "can", p)
		return
	}
	d.Caps, err = c.cfg.Authorizer.Can(r.Context(), id, sel)
	if err != nil {
		p.Error = err.Error()
	}
	d.Asked = true
	c.render(w, http.StatusOK, "can", p)
}

type whyData struct {
	Session  string
	Entry    audit.Entry
	Policies []whyPolicy
	SameSet  bool
	HasSet   bool
}

type whyPolicy struct {
	ID, Where, Text, Reason string
	Found                   bool
}

// why shows a recorded decision and the text of the policies it names, as they stand now, saying
// whether the policy set is still the one that decided.
func (c *Console) why(w http.ResponseWriter, r *http.Request, x *session) {
	q := r.URL.Query()
	p := c.page(x, "sessions", "Why")
	seq, err := strconv.ParseUint(q.Get("seq"), 10, 64)
	if c.cfg.Audit == nil || err != nil {
		p.Error = "Ask for a decision by its session and sequence number (from a replay)."
		c.render(w, http.StatusBadRequest, "error", p)
		return
	}
	tl, err := audit.Timeline(c.cfg.Audit, q.Get("session"))
	i := slices.IndexFunc(tl, func(e audit.Entry) bool { return e.Seq == seq })
	if err != nil || i < 0 || tl[i].Record.Decision == nil || !c.cfg.View.MayView(x.person, targetOf(tl)) {
		p.Error = "No such decision, or you may not see its session."
		c.render(w, http.StatusNotFound, "error", p)
		return
	}
	d := whyData{Session: q.Get("session"), Entry: tl[i]}
	dec := tl[i].Record.Decision
	if az := c.cfg.Authorizer; az != nil {
		d.HasSet = true
		d.SameSet = dec.PolicySet != "" && dec.PolicySet == az.Engine.Digest()
		for _, id := range dec.Policies {
			wp := whyPolicy{ID: id}
			if pol, ok := az.Engine.Policy(id); ok {
				wp.Found, wp.Where, wp.Reason = true, pol.File+":"+strconv.Itoa(pol.Line), pol.Reason()
				wp.Text = string(pol.Policy.MarshalCedar())
			}
			d.Policies = append(d.Policies, wp)
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "why", p)
}

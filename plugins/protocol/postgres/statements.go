package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/inspect"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/broker/tracing"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// deniedPortal is a portal name no client can create (portal names are identifiers and the broker
// refuses Bind to it). Executing it makes the backend fail exactly where a denied statement stands,
// so the transaction and the extended-protocol pipeline end up as if the server itself had refused
// the statement; the broker replaces that error with its own.
const deniedPortal = "svidbroker: statement denied"

// Approval is a request for a person's approval of one statement.
type Approval = sess.Approval

// ApproveFunc waits for the outcome of an approval request (see sess.ApproveFunc).
type ApproveFunc = sess.ApproveFunc

// prepared is a statement of the extended protocol, as the broker parsed and decided it.
type prepared struct {
	text     string
	sts      []sqlclass.Statement
	approval authz.ApprovalState
	backend  string // its name at the backend
}

// portal is a bound prepared statement.
type portal struct {
	stmt    *prepared
	params  []string // for the audit log
	backend string   // its name at the backend
}

// Names at the backend. The broker gives every named statement and portal a name of its own, so that
// a client name always means, at the backend, exactly the statement the broker decided: no client can
// reach a name made in SQL (PREPARE, DECLARE CURSOR), nor the broker's deniedPortal, and a Parse or Bind
// the backend refuses cannot leave the two sides meaning different statements by one name. The unnamed
// statement and portal keep the empty name.
func (s *session) backendName(kind string, client string) string {
	if client == "" {
		return ""
	}
	s.names++
	return sqlclass.ReservedPrefix + kind + strconv.FormatUint(s.names, 10)
}

// absentName is a name the broker never gives: closing it is a no-op at the backend.
const absentName = "svidbroker_absent"

// itemKind is what the backend is expected to answer to one client message.
type itemKind uint8

const (
	itParse itemKind = iota
	itBind
	itDescribeStmt
	itDescribePortal
	itInjected // a Describe of a portal sent by the broker to learn the result's columns
	itExecute
	itClose
	itSync
	itQuery
	itCall
	itDenied // the answer to deniedPortal: replaced with denial
)

// item is one expected answer, in the order the backend sends them.
type item struct {
	kind  itemKind
	plan  *plan
	exec  *item // itInjected: the execution whose columns it learns
	masks []fieldMask
	stmt  int // itQuery: which statement of the string the backend is answering
	// cycle numbers an itQuery, itSync or itCall: the cycle its ReadyForQuery ends (commitPoints).
	cycle uint64
	// recordFull: a deciding policy asked for @record("full"): the rows go in the audit log.
	recordFull bool
	denial     *pgproto3.ErrorResponse
	// parsed and name: itParse's statement and its client's name, forgotten if the backend refuses it.
	parsed *prepared
	name   string
	// span is the relay's span of an itQuery or itExecute, when tracing is on (trace.go); the zero
	// Leaf otherwise, which records nothing.
	span tracing.Leaf
}

// queue holds the answers the backend owes, oldest first. The client side appends before it
// forwards; the backend side consumes.
type queue struct {
	mu     sync.Mutex
	items  []*item
	pushed uint64 // items ever pushed (idleWatch)
}

func (q *queue) push(it *item) {
	q.mu.Lock()
	q.pushed++
	q.items = append(q.items, it)
	q.mu.Unlock()
}

func (q *queue) head() *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

func (q *queue) pop() {
	q.mu.Lock()
	if len(q.items) > 0 {
		endRelay(q.items[0])
		q.items[0] = nil
		q.items = q.items[1:]
	}
	q.mu.Unlock()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// skipToSync drops the items the backend will not answer after an error in the extended protocol:
// everything before the next Sync.
func (q *queue) skipToSync() {
	q.mu.Lock()
	for len(q.items) > 0 && q.items[0].kind != itSync {
		endRelay(q.items[0])
		q.items[0] = nil
		q.items = q.items[1:]
	}
	q.mu.Unlock()
}

// errStatementDenied is an error response with the 42501 SQLSTATE (insufficient_privilege).
func errStatementDenied(msg string) *pgproto3.ErrorResponse { return errorResponse("42501", msg) }

// errorResponse is an ERROR with code and msg.
func errorResponse(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

// refuseMessage answers an extended-protocol message that names nothing the broker decided, as the
// server answers a message it cannot carry out.
func (s *session) refuseMessage(e *pgproto3.ErrorResponse) error {
	return s.deny("extended", "", nil, refused(e, refusedProtocol))
}

// classify parses and classifies sql; a statement that does not parse is denied, with the parser's
// message and position as the server gives them (42601).
func (s *session) classify(sql string) ([]sqlclass.Statement, *pgproto3.ErrorResponse) {
	sts, err := s.insp.classifier.Classify(sql)
	if se, ok := errors.AsType[*sqlclass.SyntaxError](err); ok {
		e := errorResponse("42601", se.Message)
		e.Position = int32(min(se.Position, len(sql)+1))
		return nil, e
	}
	if err != nil {
		return nil, errStatementDenied("svidbroker: statement denied: it does not parse as PostgreSQL SQL, and what the broker cannot parse it does not run")
	}
	return sts, nil
}

// classifyAndDecide parses sql and decides its statements, holding them for approval if a policy
// says so.
func (s *session) classifyAndDecide(sql string) ([]sqlclass.Statement, authz.Decision, authz.ApprovalState, *refusal) {
	sts, denial := s.classify(sql)
	if denial != nil {
		return nil, authz.Decision{}, authz.ApprovalState{}, refused(denial, refusedUnparsed)
	}
	if r := s.checkSettings(sql, sts); r != nil {
		return sts, authz.Decision{}, authz.ApprovalState{}, r
	}
	s.deciding.ahead = true // a prepared statement is decided again at each execution
	d, ap, _, r := s.decide(sql, sts, authz.ApprovalState{}, true, false)
	s.deciding.ahead = false
	return sts, d, ap, r
}

// decide decides every statement of sts through the session's decider (broker/session), in order,
// with approval state ap, holding them for approval if hold and a policy says so. planned also plans
// the masking of their results, and keeps (and reuses) the decision and plan of allowed statements:
// literal variants of one statement share their classification (sqlclass.Cache), and deciding the
// same classification again within one authorization epoch gives the same decision and plan, which
// saves a pgbench-like stream of statements its Cedar decisions and masking plans. A statement held
// for approval is decided every time. It returns the decision (the last statement's), the approval
// state the statements were decided with, the plan, and a refusal when one is refused.
func (s *session) decide(text string, sts []sqlclass.Statement, ap authz.ApprovalState, hold, planned bool) (authz.Decision, authz.ApprovalState, *plan, *refusal) {
	d := &s.deciding
	if d.part == nil { // the session's first decision
		d.Decider = sess.Decider{Hold: s.hold, Policy: s.insp.authz, Metrics: s.core.Metrics(), Tracing: s.core.Tracing(), Session: s.core.SpanContext()}
		d.part, d.prepare = s.decidePart, s.planVerdict
	}
	d.sts, d.at = sts, 0
	op := sess.Operation{Action: "sql", Kind: operationKind(sts), Ahead: d.ahead, Text: text, Approval: ap, NoHold: !hold, Parts: len(sts), Part: d.part,
		SpanAttributes: s.spanAttributes(text, sts)}
	if planned {
		if s.insp.authz != nil && len(sts) > 0 {
			// The classification, by the address of its first statement: the cache's shared result,
			// which a kept verdict keeps alive, so no other classification can take that address.
			op.Key = &sts[0]
		}
		op.Prepare = d.prepare
	}
	v := d.Decide(s.ctx, op)
	d.sts = nil
	if v.Outcome == sess.Block {
		r := s.verdictRefusal(sts, d.at, v)
		r.decided = true
		return v.Decision, v.Approval, nil, r
	}
	p, _ := v.Plan.(*plan)
	return v.Decision, v.Approval, p, nil
}

// operationKind is the statements' kind in metrics: theirs when they share one, "multiple" when
// they do not, "empty" for none.
func operationKind(sts []sqlclass.Statement) string {
	if len(sts) == 0 {
		return "empty"
	}
	for _, st := range sts[1:] {
		if st.Kind != sts[0].Kind {
			return "multiple"
		}
	}
	return sts[0].Kind
}

// deciding is the session's decider, and the statements it is deciding (decide) for its operation's
// Part and Prepare, which are made once per session.
type deciding struct {
	sess.Decider
	sts     []sqlclass.Statement
	at      int // the statement decided last
	part    func(int, authz.ApprovalState) (authz.Decision, error)
	prepare func(sess.Verdict) (any, error)
	ahead   bool // the statements are being prepared (Parse), not run
}

// decidePart decides statement i of those being decided (an operation's Part), through the views it
// reads: a view's query may do more than read (viewkinds.go).
func (s *session) decidePart(i int, ap authz.ApprovalState) (authz.Decision, error) {
	d := &s.deciding
	d.at = i
	return s.decideOne(s.insp.funcs().throughViews(d.sts[i]), len(d.sts) > 1, ap)
}

// planVerdict plans the masking of the results of the statements being decided, allowed by v (an
// operation's Prepare), and refuses them when their data could carry masked values unmasked.
func (s *session) planVerdict(v sess.Verdict) (any, error) {
	sts := s.deciding.sts
	p := s.buildPlan(sts, v.Approval)
	if resp := copyOutDenied(sts, p); resp != nil {
		return nil, refused(resp, refusedUnmaskable)
	}
	if r := s.checkMaskedUses(sts, p, v.Approval); r != nil {
		return nil, r
	}
	if p != nil {
		p.listed = p.maskedIn(sts)
	}
	return p, nil
}

// verdictRefusal is the refusal of a blocked verdict of sts, of which sts[at] was decided last.
func (s *session) verdictRefusal(sts []sqlclass.Statement, at int, v sess.Verdict) *refusal {
	if r, ok := errors.AsType[*refusal](v.Err); ok {
		return r // the plan's (decide's Prepare)
	}
	if w, ok := errors.AsType[*sess.Withdrawn](v.Err); ok {
		return withdrawalRefusal(w, v.Decision)
	}
	st := s.insp.funcs().throughViews(sts[at]) // as it was decided
	if errors.Is(v.Err, sess.ErrApproval) {
		return approvalRefusal(errStatementDenied(denialMessage(st, v.Cause)), v.Decision, v.Request, v.Approval.State)
	}
	return s.statementRefusal(st, v.Decision, v.Cause)
}

// statementRefusal is the refusal of st, which decideOne refused with d and err.
func (s *session) statementRefusal(st sqlclass.Statement, d authz.Decision, err error) *refusal {
	resp := errStatementDenied(denialMessage(st, err))
	switch {
	case s.insp.authz == nil:
		return refused(resp, refusedNoPolicies)
	case errors.Is(err, errUnknownFunction):
		return refused(resp, refusedUnknownFunction)
	}
	return policyRefusal(resp, d)
}

func denialMessage(st sqlclass.Statement, err error) string {
	msg := "svidbroker: " + err.Error()
	if st.Kind == sqlclass.KindAdmin && len(st.AdminReasons) > 0 {
		msg += " (" + strings.Join(st.AdminReasons, "; ") + " escapes inspection, so it is an admin action)"
	}
	return msg
}

// decideOne decides one statement: by policy when the target has Cedar policies, else only admin
// constructs are refused.
func (s *session) decideOne(st sqlclass.Statement, multi bool, ap authz.ApprovalState) (authz.Decision, error) {
	if s.insp.authz == nil {
		if st.Kind == sqlclass.KindAdmin {
			return authz.Decision{}, fmt.Errorf("%s statement denied: this target has no policies, and admin actions need one", strings.ToUpper(st.Kind))
		}
		return authz.Decision{Allow: true}, nil
	}
	accesses := make([]authz.Access, len(st.Accesses))
	for i, a := range st.Accesses {
		accesses[i] = authz.Access{Action: a.Action, Table: a.Table}
	}
	ast := authz.Statement{Kind: st.Kind, Tables: st.Tables(), Functions: st.Functions, MultiStatement: multi}
	d, err := s.insp.authz.Statement(s.insp.connect, ast, accesses, ap, &s.memo)
	if err != nil {
		return d, err
	}
	return s.decideFunctions(st, ast, ap, d)
}

// hold asks for approval of op, which d requires, and waits for it (sess.Hold), telling the client the
// request's ID: the session's decider holds with it. It returns the approval's outcome and the
// request's ID. A cancel request from the client, or the client's going away, withdraws the request
// (hold.go): the error is then a *sess.Withdrawn, whatever the approver says.
func (s *session) hold(ctx context.Context, op sess.Operation, d authz.Decision) (authz.ApprovalState, string, error) {
	return sess.Hold(ctx, sess.HoldRequest{
		Session: s.rec.session, SPIFFEID: s.rec.spiffeID, Target: s.rec.target, Tracing: s.core.Tracing(),
		Text: op.Text, Decision: d, Action: op.Action, Approve: s.insp.approve, Timeout: s.insp.approvalTimeout,
		Grants: s.insp.grants, Fingerprint: statementFingerprint(op), Attestation: s.insp.connect.Peer.Attestation,
		Notify: func(request string) error {
			s.clientMu.Lock()
			defer s.clientMu.Unlock()
			s.client.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
				Message: "svidbroker: this statement is waiting for approval; request " + request})
			return s.flushClient()
		},
		Withdrawable: s.beginHold,
		Record:       s.rec.async,
		Log:          s.log,
		Metrics:      s.core.Metrics(),
	})
}

// buildPlan decides column:read-unmasked for every tagged column of the target in the context of
// each statement.
func (s *session) buildPlan(sts []sqlclass.Statement, ap authz.ApprovalState) *plan {
	if s.insp.authz == nil || s.insp.meta == nil || len(s.insp.meta.tables) == 0 {
		return nil
	}
	p := &plan{meta: s.insp.meta, cols: map[colKey]inspect.Strategy{}, tables: map[uint32]inspect.Strategy{}}
	multi := len(sts) > 1
	for _, st := range sts {
		ast := authz.Statement{Kind: st.Kind, Tables: st.Tables(), Functions: st.Functions, MultiStatement: multi}
		for oid, t := range s.insp.meta.tables {
			for attr, col := range t.columns {
				strategy, _ := s.insp.authz.StatementColumnMask(s.insp.connect, t.name, col, ast, ap, string(s.insp.defaultMask), &s.memo)
				if strategy != "" {
					p.addColumn(oid, attr, col, inspect.Strategy(strategy))
				}
			}
		}
	}
	p.finish(sts)
	if !p.active() {
		return nil
	}
	return p
}

// copyOutDenied refuses COPY TO STDOUT whose data could include a masked column, since COPY data is not
// masked: a masked column or a star among its columns, a computed column over a masked one, or a
// relation outside the catalog (a view could rename a masked column).
func copyOutDenied(sts []sqlclass.Statement, p *plan) *pgproto3.ErrorResponse {
	if !p.active() {
		return nil
	}
	for _, st := range sts {
		if !st.CopyOut {
			continue
		}
		risky := p.derived != ""
		for _, c := range st.Columns {
			risky = risky || c == "*" || slices.Contains(p.maskedNames, c)
		}
		for _, a := range st.Accesses {
			risky = risky || !p.meta.catalog[a.Table]
		}
		if risky {
			return errStatementDenied("svidbroker: COPY TO STDOUT denied: its data could include masked columns, which COPY cannot mask; name unmasked columns, or use SELECT")
		}
	}
	return nil
}

func kinds(sts []sqlclass.Statement) []string {
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = st.Kind
	}
	return out
}

func (s *session) auditStatement(protocol, text, name string, sts []sqlclass.Statement, d authz.Decision, params []string, p *plan) audit.Record {
	if !s.rec.on() {
		return audit.Record{} // nothing records it: not worth building
	}
	st := &audit.Statement{Protocol: protocol, Text: text, Name: name, Kinds: kinds(sts), Params: params, Masked: p.Masked()}
	rec := audit.Record{Kind: audit.KindStatement, Statement: st}
	if d.ID != "" {
		rec.Decision = sess.AuditDecision(d, "sql", s.rec.target)
	}
	return rec
}

// deny answers a refused statement: the backend is made to fail where it stands (deniedPortal), and
// the broker's error replaces the backend's. In the simple protocol, and for a function call, a Sync
// follows, which gives the client its ReadyForQuery; in the extended protocol the client's messages
// are discarded until its Sync, as the server would.
func (s *session) deny(protocol, text string, sts []sqlclass.Statement, r *refusal) error {
	if s.rec.on() {
		rec := s.auditStatement(protocol, text, "", sts, authz.Decision{}, nil, nil)
		r.record(&rec, s.rec.target)
		s.rec.async(rec)
	}
	s.log.Info("statement denied", "protocol", protocol, "kinds", kinds(sts), "reason", r.reason, "decision", r.d.ID, "policies", r.d.Reasons)
	if !r.decided { // refused before a decision: unparsed, a protocol rule, a limit, a setting
		kind := operationKind(sts)
		if r.reason == refusedUnparsed {
			kind = "unparsed"
		}
		s.core.Metrics().OperationRefused(kind)
	}
	s.queue.push(&item{kind: itDenied, denial: r.resp})
	s.backend.Send(&pgproto3.Execute{Portal: deniedPortal})
	if protocol == "extended" {
		s.discarding = true
		return nil
	}
	s.queue.push(&item{kind: itSync, cycle: s.nextCycle()})
	s.backend.Send(&pgproto3.Sync{})
	return s.flushBackend()
}

// decideAndPlan decides sts (holding them for approval if hold and a policy says so) and plans the
// masking of their results (decide). It returns the decision, the approval state the statements were
// decided with, the plan, and a refusal when one is refused.
func (s *session) decideAndPlan(text string, sts []sqlclass.Statement, ap authz.ApprovalState, hold bool) (authz.Decision, authz.ApprovalState, *plan, *refusal) {
	if r := s.checkSettings(text, sts); r != nil {
		return authz.Decision{}, ap, nil, r // before the verdicts: their key does not see the values
	}
	return s.decide(text, sts, ap, hold, true)
}

// onQuery handles a simple-protocol Query: every statement in it is decided, and the whole string is
// refused if one is.
func (s *session) onQuery(m *pgproto3.Query) error {
	sts, resp := s.classify(m.String)
	if resp != nil {
		return s.deny("simple", m.String, sts, refused(resp, refusedUnparsed))
	}
	d, _, p, denial := s.decideAndPlan(m.String, sts, authz.ApprovalState{}, true)
	if denial != nil {
		return s.deny("simple", m.String, sts, denial)
	}
	if err := s.recordStatement(s.auditStatement("simple", m.String, "", sts, d, nil, p), sts, true); err != nil {
		return err
	}
	if err := s.noticeRedacted(p, sts); err != nil {
		return err
	}
	it := &item{kind: itQuery, plan: p, recordFull: d.Obligations.Record == "full", cycle: s.nextCycle()}
	s.relaySpan(&it.span, sts)
	s.queue.push(it)
	s.backend.Send(m)
	return s.flushBackend()
}

// onParse decides a statement when it is prepared (holding it for approval if a policy says so).
func (s *session) onParse(m *pgproto3.Parse) error {
	sts, _, ap, denial := s.classifyAndDecide(m.Query)
	if denial != nil {
		return s.deny("extended", m.Query, sts, denial)
	}
	if m.Name != "" && s.stmts[m.Name] != nil {
		// As the server: a named statement must be closed before its name is used again.
		return s.deny("extended", m.Query, sts, refused(errorResponse("42P05", fmt.Sprintf("prepared statement %q already exists", m.Name)), refusedProtocol))
	}
	if len(s.stmts) >= maxPrepared && s.stmts[m.Name] == nil {
		return s.deny("extended", m.Query, sts, refused(errStatementDenied(fmt.Sprintf("svidbroker: more than %d prepared statements in one session", maxPrepared)), refusedLimit))
	}
	st := &prepared{text: m.Query, sts: sts, approval: ap, backend: s.backendName("s", m.Name)}
	s.stmts[m.Name] = st
	s.queue.push(&item{kind: itParse, parsed: st, name: m.Name})
	s.backend.Send(&pgproto3.Parse{Name: st.backend, Query: m.Query, ParameterOIDs: m.ParameterOIDs})
	return nil
}

// maxPrepared and maxPortals bound what a session may keep open.
const (
	maxPrepared = 10000
	maxPortals  = 10000
)

func (s *session) onBind(m *pgproto3.Bind) error {
	st, ok := s.stmts[m.PreparedStatement]
	if !ok {
		return s.refuseMessage(errStatementDenied(fmt.Sprintf(
			"svidbroker: prepared statement %q was not prepared through the broker", m.PreparedStatement)))
	}
	if len(s.portals) >= maxPortals && s.portals[m.DestinationPortal] == nil {
		return s.deny("extended", st.text, st.sts, refused(errStatementDenied(fmt.Sprintf("svidbroker: more than %d portals in one session", maxPortals)), refusedLimit))
	}
	pt := &portal{stmt: st, backend: s.backendName("p", m.DestinationPortal)}
	if s.rec.on() {
		pt.params = auditParams(m)
	}
	s.portals[m.DestinationPortal] = pt
	s.queue.push(&item{kind: itBind})
	s.backend.Send(&pgproto3.Bind{DestinationPortal: pt.backend, PreparedStatement: st.backend,
		ParameterFormatCodes: m.ParameterFormatCodes, Parameters: m.Parameters, ResultFormatCodes: m.ResultFormatCodes})
	return nil
}

// maxAuditParam bounds one recorded parameter.
const maxAuditParam = 256

func auditParams(m *pgproto3.Bind) []string {
	out := make([]string, len(m.Parameters))
	for i, v := range m.Parameters {
		format := int16(0)
		switch {
		case len(m.ParameterFormatCodes) == 1:
			format = m.ParameterFormatCodes[0]
		case i < len(m.ParameterFormatCodes):
			format = m.ParameterFormatCodes[i]
		}
		switch {
		case v == nil:
			out[i] = "NULL"
		case format != 0 || !utf8.Valid(v):
			out[i] = "<" + strconv.Itoa(len(v)) + " bytes>"
		case len(v) > maxAuditParam:
			out[i] = string(v[:maxAuditParam]) + "…"
		default:
			out[i] = string(v)
		}
	}
	return out
}

// onExecute decides the bound statement again (policies may have changed since it was prepared),
// records it durably, and learns the result's columns first when some may need masking.
func (s *session) onExecute(m *pgproto3.Execute) error {
	pt, ok := s.portals[m.Portal]
	if !ok {
		return s.refuseMessage(errStatementDenied(fmt.Sprintf(
			"svidbroker: portal %q was not bound through the broker", m.Portal)))
	}
	st := pt.stmt
	d, _, p, denial := s.decideAndPlan(st.text, st.sts, st.approval, false)
	if denial != nil {
		return s.deny("extended", st.text, st.sts, denial)
	}
	params := pt.params
	if p.active() && mentionsMasked(st.sts, p) {
		params = make([]string, len(pt.params))
		for i := range params {
			params[i] = "<withheld>"
		}
	}
	if err := s.recordStatement(s.auditStatement("extended", st.text, "", st.sts, d, params, p), st.sts, false); err != nil {
		return err
	}
	if err := s.noticeRedacted(p, st.sts); err != nil {
		return err
	}
	exec := &item{kind: itExecute, plan: p, recordFull: d.Obligations.Record == "full"}
	s.relaySpan(&exec.span, st.sts)
	if p.active() {
		s.queue.push(&item{kind: itInjected, exec: exec})
		s.backend.Send(&pgproto3.Describe{ObjectType: 'P', Name: pt.backend})
	}
	s.queue.push(exec)
	s.backend.Send(&pgproto3.Execute{Portal: pt.backend, MaxRows: m.MaxRows})
	return nil
}

// onDescribe asks the backend about a statement or portal, by its backend name.
func (s *session) onDescribe(m *pgproto3.Describe) error {
	switch m.ObjectType {
	case 'S':
		st, ok := s.stmts[m.Name]
		if !ok {
			return s.refuseMessage(errorResponse("26000", fmt.Sprintf("prepared statement %q does not exist", m.Name)))
		}
		s.queue.push(&item{kind: itDescribeStmt})
		s.backend.Send(&pgproto3.Describe{ObjectType: 'S', Name: st.backend})
	case 'P':
		pt, ok := s.portals[m.Name]
		if !ok {
			return s.refuseMessage(errorResponse("34000", fmt.Sprintf("portal %q does not exist", m.Name)))
		}
		s.queue.push(&item{kind: itDescribePortal})
		s.backend.Send(&pgproto3.Describe{ObjectType: 'P', Name: pt.backend})
	default:
		return s.refuseMessage(errorResponse("08P01", fmt.Sprintf("invalid DESCRIBE message subtype %d", m.ObjectType)))
	}
	return nil
}

// onClose closes a statement or portal by its backend name. Closing a name that does not exist is not
// an error, as with the server.
func (s *session) onClose(m *pgproto3.Close) error {
	name := absentName
	switch m.ObjectType {
	case 'S':
		if st, ok := s.stmts[m.Name]; ok {
			name = st.backend
			delete(s.stmts, m.Name)
		}
	case 'P':
		if pt, ok := s.portals[m.Name]; ok {
			name = pt.backend
			delete(s.portals, m.Name)
		}
	default:
		return s.refuseMessage(errorResponse("08P01", fmt.Sprintf("invalid CLOSE message subtype %d", m.ObjectType)))
	}
	if name == "" && m.Name != "" {
		name = absentName
	}
	s.queue.push(&item{kind: itClose})
	s.backend.Send(&pgproto3.Close{ObjectType: m.ObjectType, Name: name})
	return nil
}

// mentionsMasked reports whether a statement mentions a masked column, so that its parameters may be
// values of one.
func mentionsMasked(sts []sqlclass.Statement, p *plan) bool {
	for _, st := range sts {
		for _, r := range st.Refs {
			if r == "*" || slices.Contains(p.maskedNames, r) {
				return true
			}
		}
	}
	return p.scrub
}

// onFunctionCall decides the function-call protocol, an admin action: it calls a function by OID,
// which no statement shows. Its effect is unknown, so it is a commit point.
func (s *session) onFunctionCall(m *pgproto3.FunctionCall) error {
	text := "function call protocol: function OID " + strconv.FormatUint(uint64(m.Function), 10)
	sts := []sqlclass.Statement{{Kind: sqlclass.KindAdmin, AdminReasons: []string{"the function-call protocol"}, Effect: sqlclass.EffectCommit}}
	d, _, _, denial := s.decide(text, sts, authz.ApprovalState{}, false, false)
	if denial != nil {
		return s.deny("function-call", text, sts, denial)
	}
	if err := s.recordStatement(s.auditStatement("function-call", text, "", sts, d, nil, nil), sts, true); err != nil {
		return err
	}
	s.queue.push(&item{kind: itCall, cycle: s.nextCycle()})
	s.backend.Send(m)
	return s.flushBackend()
}

// inspection is what a session needs to decide statements and mask results.
type inspection struct {
	authz           *authz.Authorizer
	connect         authz.Connect
	classifier      *sqlclass.Cache
	meta            *dbMeta
	masker          *inspect.Masker
	defaultMask     inspect.Strategy
	approve         ApproveFunc
	grants          sess.GrantFunc
	approvalTimeout time.Duration
}

package console

import (
	"bytes"
	"html/template"
	"net/http"
	"time"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
}

// render writes a page, buffered, so a template error never leaves half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, p); err != nil {
		c.cfg.Logger.Error("console: template", "page", name, "error", err)
		http.Error(w, "console: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (c *Console) style(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write([]byte(css))
}

const css = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#f6f6f4}
a{color:#0b57a4}
:focus-visible{outline:3px solid #d9480f;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:8px;z-index:1}
header{background:#1f2a36;color:#fff;padding:8px 16px;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center}
header a{color:#fff}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}
nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
header form{margin-left:auto;display:flex;gap:8px;align-items:center}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:0 0 12px}
.card{background:#fff;border:1px solid #ccc;border-radius:6px;padding:12px 16px;margin:0 0 16px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0 0 12px}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
pre,code{font:14px/1.4 ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
pre{background:#f0f0ee;padding:8px;margin:0}
label{display:block;font-weight:600;margin:8px 0 4px}
input,select,textarea,button{font:inherit;padding:6px 8px;border:1px solid #777;border-radius:4px;max-width:100%}
textarea,input[type=text]{width:100%}
button{cursor:pointer;background:#fff;min-height:44px;min-width:44px}
button.approve{background:#1b6e3a;color:#fff;border-color:#1b6e3a}
button.deny{background:#a61b1b;color:#fff;border-color:#a61b1b}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:end}
.row>div{flex:1 1 12rem;min-width:0}.row select{width:100%}
.error{background:#fde8e8;border:1px solid #a61b1b;padding:8px 12px;border-radius:4px}
.notice{background:#e6f4ea;border:1px solid #1b6e3a;padding:8px 12px;border-radius:4px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top}
.allow{color:#1b6e3a;font-weight:600}.deny-t{color:#a61b1b;font-weight:600}
@media (max-width:600px){body{font-size:15px}header form{margin-left:0}th,td{padding:4px}}`

var templates = template.Must(template.New("").Funcs(funcs).Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · svidbroker console</title><link rel="stylesheet" href="{{.Base}}/style.css"></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><strong>svidbroker console</strong>
{{if .Email}}<nav aria-label="Console"><ul>
<li><a href="{{.Base}}/approvals"{{if eq .Nav "approvals"}} aria-current="page"{{end}}>Approvals</a></li>
<li><a href="{{.Base}}/sessions"{{if eq .Nav "sessions"}} aria-current="page"{{end}}>Sessions</a></li>
<li><a href="{{.Base}}/can"{{if eq .Nav "can"}} aria-current="page"{{end}}>What may an agent do</a></li>
</ul></nav>
<form method="post" action="{{.Base}}/logout"><span>{{.Email}}</span><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit" id="logout">Log out</button></form>{{end}}
</header>
<main id="main" tabindex="-1"><h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
{{end}}
{{define "foot"}}</main></body></html>{{end}}

{{define "error"}}{{template "head" .}}<p><a href="{{.Base}}/approvals">Back to the console</a></p>{{template "foot"}}{{end}}

{{define "loggedout"}}{{template "head" .}}<p>You are logged out of the console.</p><p><a href="{{.Base}}/login" id="login">Log in again</a></p>{{template "foot"}}{{end}}

{{define "approvals"}}{{template "head" .}}
{{$p := .}}
{{with .Data}}{{range .}}
<section class="card" aria-labelledby="req-{{.ID}}">
<h2 id="req-{{.ID}}">Request {{.ID}}</h2>
<dl>
<dt>Agent</dt><dd><code>{{.SPIFFEID}}</code></dd>
<dt>Target</dt><dd>{{.Target}}</dd>
<dt>Asks to run</dt><dd><pre>{{.Statement}}</pre></dd>
<dt>Deciding policy</dt><dd>{{range $i, $x := .Policies}}{{if $i}}, {{end}}<code>{{$x}}</code>{{else}}—{{end}}{{if .Decision}} (decision {{.Decision}}){{end}}</dd>
<dt>Session</dt><dd><code>{{.Session}}</code></dd>
{{if .Attestation}}<dt>SPIRE attested</dt><dd>{{range $i, $x := .Attestation}}{{if $i}}, {{end}}<code>{{$x}}</code>{{end}}</dd>{{end}}
{{with .Owner}}<dt>Agent's owner</dt><dd>{{.}} (may not approve it)</dd>{{end}}
{{with .Fingerprint}}<dt>Fingerprint</dt><dd><code>{{.}}</code> (what a fingerprint scope covers)</dd>{{end}}
{{if .Required}}<dt>Approvals</dt><dd>{{len .Approvals}} of {{.Required}} needed{{range .Approvals}}; {{if .Approve}}approved{{else}}denied{{end}} by {{.Email}} {{when .At}}{{end}}</dd>{{end}}
{{with .Start}}<dt>Session start</dt><dd>authenticated by {{index .Detail "authenticated_by"}}; SVID expires {{index .Detail "svid_expires"}}{{with index .Detail "credential_role"}}; credential role {{.}}{{end}}</dd>{{end}}
<dt>Waiting since</dt><dd>{{when .Created}}{{if not .Expires.IsZero}}; expires {{when .Expires}}{{end}}</dd>
</dl>
<form method="post" action="{{$p.Base}}/approvals/{{.ID}}">
<input type="hidden" name="csrf" value="{{$p.CSRF}}">
<label for="reason-{{.ID}}">Reason</label>
<textarea id="reason-{{.ID}}" name="reason" rows="2" maxlength="1024"></textarea>
<div class="row">
<div><label for="scope-{{.ID}}">Scope</label>
<select id="scope-{{.ID}}" name="scope"><option value="once" selected>This operation once</option><option value="fingerprint">This operation's fingerprint for a while</option><option value="session">This session for a while</option></select></div>
<div><label for="minutes-{{.ID}}">Minutes (for a fingerprint or session scope)</label>
<input id="minutes-{{.ID}}" name="minutes" type="number" min="1" max="1440" value="15" inputmode="numeric"></div>
<button type="submit" name="decision" value="approve" class="approve" id="approve-{{.ID}}">Approve</button>
<button type="submit" name="decision" value="deny" class="deny" id="deny-{{.ID}}">Deny</button>
</div></form></section>
{{end}}{{else}}{{if not .Error}}<p id="none">Nothing is waiting for approval.</p>{{end}}{{end}}
{{template "foot"}}{{end}}

{{define "sesstable"}}<div class="scroll"><table>
<thead><tr><th scope="col">Session</th><th scope="col">Agent</th><th scope="col">Target</th><th scope="col">Started</th><th scope="col">Last record</th><th scope="col">Operations</th><th scope="col">Refusals</th><th scope="col">Masked columns</th></tr></thead>
<tbody>{{range .}}<tr><td><a href="/sessions/{{.Session}}">{{.Session}}</a></td><td><code>{{.SPIFFEID}}</code></td><td>{{.Target}}</td><td>{{when .Start}}</td><td>{{when .Last}}</td><td>{{.Operations}}</td><td>{{.Refusals}}</td><td>{{.Masks}}</td></tr>{{end}}</tbody>
</table></div>{{end}}

{{define "sessions"}}{{template "head" .}}
{{with .Data}}
<h2>Live</h2>{{if .Live}}{{template "sesstable" .Live}}{{else}}<p>No live sessions you may see.</p>{{end}}
<h2>Ended</h2>{{if .Ended}}{{template "sesstable" .Ended}}{{else}}<p>No ended sessions you may see.</p>{{end}}
{{if .Hidden}}<p>{{.Hidden}} more session(s) are on targets the policy does not let you see.</p>{{end}}
{{end}}
{{template "foot"}}{{end}}

{{define "replay"}}{{template "head" .}}
{{$p := .}}{{with .Data}}
{{if .Verified}}<p class="notice" role="status" id="verified">Audit chain verified before showing this session: {{.Report.Records}} records, every MAC and link intact; {{.Report.Checkpoints}} signed checkpoint(s), records up to #{{.Proven}} proven present.</p>
<p>Target {{.Target}}.</p>
<div class="scroll"><table><thead><tr><th scope="col">#</th><th scope="col">Record</th><th scope="col"><span class="skip">Why</span></th></tr></thead><tbody>
{{range .Entries}}<tr><td>{{.Seq}}</td><td><code>{{.Line}}</code></td><td>{{if .Decision}}<a href="{{$p.Base}}/why?session={{$.Data.Session}}&amp;seq={{.Seq}}">why</a>{{end}}</td></tr>{{end}}
</tbody></table></div>
{{else}}{{with .Report}}<ul>{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}{{end}}
{{end}}
{{template "foot"}}{{end}}

{{define "can"}}{{template "head" .}}
{{with .Data}}
<form method="get" action="{{$.Base}}/can" class="card">
<label for="spiffe_id">SPIFFE ID</label><input type="text" id="spiffe_id" name="spiffe_id" value="{{.SPIFFEID}}" required placeholder="spiffe://example.org/agent/migrator">
<label for="selectors">Selectors (comma-separated, as SPIRE attests them)</label><input type="text" id="selectors" name="selectors" value="{{.Selectors}}" placeholder="unix:uid:1001, agent:owner:owner@example.com">
<p><button type="submit" id="ask">Ask the policy</button></p></form>
{{if .Asked}}<div class="scroll"><table id="caps"><thead><tr><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Decision</th><th scope="col">Policies</th><th scope="col">Obligations</th></tr></thead><tbody>
{{range .Caps}}<tr><td>{{.Action}}</td><td><code>{{.Resource}}</code></td><td>{{if .Allow}}<span class="allow">allowed</span>{{else}}<span class="deny-t">denied</span>{{end}}</td><td>{{range $i, $x := .Reasons}}{{if $i}}, {{end}}<code>{{$x}}</code>{{end}}</td><td>{{with .Obligations.Approval}}approval {{.}} {{end}}{{with .Obligations.Mask}}mask {{.}} {{end}}{{with .Obligations.Record}}record {{.}}{{end}}</td></tr>{{end}}
</tbody></table></div>{{end}}
{{end}}
{{template "foot"}}{{end}}

{{define "why"}}{{template "head" .}}
{{with .Data}}{{with .Entry.Record.Decision}}
<dl class="card"><dt>Decision</dt><dd>{{if .Allow}}<span class="allow">allowed</span>{{else}}<span class="deny-t">refused</span>{{end}}</dd>
<dt>Action</dt><dd>{{.Action}}</dd><dt>Resource</dt><dd><code>{{.Resource}}</code></dd>
<dt>Policy set</dt><dd><code>{{.PolicySet}}</code></dd>
{{with .Approval}}<dt>Approval</dt><dd>{{.}}</dd>{{end}}{{with .Mask}}<dt>Mask</dt><dd>{{.}}</dd>{{end}}{{with .ErrorPolicy}}<dt>Erroring policy</dt><dd>{{.}}</dd>{{end}}
</dl>{{if not .Policies}}<p>No policy permitted it: Cedar denies by default.</p>{{end}}{{end}}
<p>Record #{{.Entry.Seq}} of session <a href="/sessions/{{.Session}}">{{.Session}}</a>.</p>
{{if .HasSet}}{{if .SameSet}}<p>The policy set in force is the one that decided.</p>{{else}}<p class="error">The policy set has changed since this decision: the text below is today's.</p>{{end}}
{{range .Policies}}<section class="card"><h2>{{.ID}}</h2>{{if .Found}}<p>{{.Where}}{{with .Reason}}: {{.}}{{end}}</p><pre>{{.Text}}</pre>{{else}}<p>This policy is no longer in the policy set.</p>{{end}}</section>{{end}}{{end}}
{{end}}
{{template "foot"}}{{end}}
`))

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// httpAgentEnv makes this test binary, run again as a persona, an HTTP agent: it takes its SVID from
// the Workload API with a go-spiffe X509Source, checks the broker's SPIFFE ID, GETs the URL in the
// variable with net/http and prints what it got as JSON.
const httpAgentEnv = "SVIDBROKER_E2E_HTTP_AGENT"

type httpAgentReply struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func init() {
	url, ok := os.LookupEnv(httpAgentEnv)
	if !ok {
		return
	}
	rep, err := httpAgent(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func httpAgent(url string) (*httpAgentReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	tlsCfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(brokerIDName)))
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &httpAgentReply{Status: resp.StatusCode, Body: string(b)}, err
}

// TestHTTPGoClientWithX509Source: an agent process running as support uses go-spiffe's X509Source
// from the real Workload API and net/http; it reads customer 2 masked.
func TestHTTPGoClientWithX509Source(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 2)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := h.s.Install(self, "http-agent")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := h.s.Command(t.Context(), stack.PersonaSupport, bin)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, httpAgentEnv+"="+h.base()+"/v1/customers/2")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the agent: %v %s", err, stderr.String())
	}
	var rep httpAgentReply
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("the agent's report %q: %v", out, err)
	}
	if rep.Status != http.StatusOK || !strings.Contains(rep.Body, row.Name) {
		t.Fatalf("agent GET /v1/customers/2: %d %s", rep.Status, rep.Body)
	}
	if strings.Contains(rep.Body, row.Email) || strings.Contains(rep.Body, row.SSN) {
		t.Fatalf("the agent read a clear value: %s", rep.Body)
	}
}

// TestHTTPThroughConnect: `svidbroker connect --protocol http` gives curl a plain http://127.0.0.1
// URL, as support with its X.509-SVID and as the analyst with --jwt-audience (a JWT-SVID per
// request); the records name each persona's SPIFFE ID, `audit verify` passes over the chain, and
// `audit sessions` and `replay` show the requests.
func TestHTTPThroughConnect(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 3)
	support := startConnectArgs(t, h.s, stack.PersonaSupport, "--protocol", "http",
		"--listen", "127.0.0.1:0", "--broker", h.listen, "--broker-id", brokerIDName)
	code, body := curl(t, "http://"+support.addr+"/v1/customers/3")
	if code != http.StatusOK || !strings.Contains(body, row.Name) || strings.Contains(body, row.Email) || strings.Contains(body, row.SSN) {
		t.Fatalf("curl through connect as support: %d %s", code, body)
	}
	analyst := startConnectArgs(t, h.s, stack.PersonaAnalyst, "--protocol", "http", "--jwt-audience", stack.JWTAudience,
		"--listen", "127.0.0.1:0", "--broker", h.listen, "--broker-id", brokerIDName)
	code, body = curl(t, "-H", "Authorization: Bearer forged-by-the-client", "http://"+analyst.addr+"/v1/customers/3")
	if code != http.StatusOK || !strings.Contains(body, row.Name) || strings.Contains(body, row.Email) || strings.Contains(body, row.SSN) {
		t.Fatalf("curl through connect --jwt-audience as the analyst: %d %s", code, body)
	}
	if code, body = curl(t, "-X", "DELETE", "http://"+analyst.addr+"/v1/orders/30"); code != http.StatusForbidden {
		t.Fatalf("the analyst's DELETE through connect: %d %s", code, body)
	}
	if !h.orderExists(t, 30) {
		t.Fatal("the analyst's refused DELETE deleted order 30")
	}
	sessions := map[string]string{}
	for _, p := range []string{stack.PersonaSupport, stack.PersonaAnalyst} {
		id := mustPersonaID(t, h.s, p)
		rec := h.waitRecord(t, p+"'s request through connect", func(r audit.Record) bool {
			return r.Statement != nil && r.Statement.Text == "GET /v1/customers/3" && r.SPIFFEID == id && r.Decision != nil && r.Decision.Allow
		})
		sessions[p] = rec.Session
	}
	// The policy's refusal is a denied record (not a statement), with the decision and the route.
	denied := h.waitRecord(t, "the analyst's refused DELETE", func(r audit.Record) bool {
		return r.Statement != nil && r.Statement.Text == "DELETE /v1/orders/30" && r.SPIFFEID == mustPersonaID(t, h.s, stack.PersonaAnalyst)
	})
	if denied.Kind != audit.KindDenied || denied.Decision == nil || denied.Decision.Allow || denied.Detail["route"] != "DELETE /v1/orders/{id}" ||
		!strings.Contains(denied.Detail["refused"], "http:delete") {
		t.Errorf("the refused DELETE recorded as %s %+v %v", denied.Kind, denied.Decision, denied.Detail)
	}
	if out, err := execOut(t, brokerBin, "audit", "verify", "--dir", h.b.AuditDir, "--chain", h.b.Chain,
		"--mac-key", filepath.Join(h.b.AuditKeys, audit.MACKeyFile)); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	config := "--config=" + h.b.ConfigPath
	listed := brokerCLI(t, h.b, "audit", "sessions", config, "--spiffe-id="+mustPersonaID(t, h.s, stack.PersonaAnalyst))
	if !strings.Contains(listed, sessions[stack.PersonaAnalyst]) {
		t.Errorf("audit sessions does not list the analyst's http session %s:\n%s", sessions[stack.PersonaAnalyst], listed)
	}
	if refused := brokerCLI(t, h.b, "audit", "sessions", config, "--decision=deny", "--spiffe-id="+mustPersonaID(t, h.s, stack.PersonaAnalyst)); !strings.Contains(refused, denied.Session) {
		t.Errorf("audit sessions --decision=deny does not list the session of the refused DELETE %s:\n%s", denied.Session, refused)
	}
	replay := brokerCLI(t, h.b, "replay", config, sessions[stack.PersonaAnalyst])
	if !strings.Contains(replay, "GET /v1/customers/3") || !strings.Contains(replay, "analyst") {
		t.Errorf("replay of the analyst's session does not show its request:\n%s", replay)
	}
	if replay := brokerCLI(t, h.b, "replay", config, denied.Session); !strings.Contains(replay, "DELETE /v1/orders/30") || !strings.Contains(replay, "refused") {
		t.Errorf("replay of the session of the refused DELETE does not show it refused:\n%s", replay)
	}
}

func execOut(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

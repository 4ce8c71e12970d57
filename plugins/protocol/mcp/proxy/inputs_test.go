package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// addAskingTools adds to the rig's shop two tools that ask the client by input requests, as a
// go-sdk server does at 2026-07-28: ask (elicitation, its message quoting the customer's ssn) and
// sample (sampling).
func addAskingTools(r *rig) {
	r.shop.srv.AddTool(&mcp.Tool{Name: "ask", Description: "Asks the user.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			resp, ok := req.Params.InputResponses["q"]
			if !ok {
				return &mcp.CallToolResult{RequestState: "state-1", InputRequests: mcp.InputRequestMap{"q": &mcp.ElicitParams{Mode: "form",
					Message: "Is " + ssn + " yours?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}}}}}}, nil
			}
			er, ok := resp.(*mcp.ElicitResult)
			if !ok {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "not an elicitation result"}}}, nil
			}
			b, _ := json.Marshal(er.Content)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: er.Action + " " + string(b)}}}, nil
		})
	r.shop.srv.AddTool(&mcp.Tool{Name: "sample", Description: "Drafts a reply.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			resp, ok := req.Params.InputResponses["d"]
			if !ok {
				return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"d": &mcp.CreateMessageParams{MaxTokens: 10,
					Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "draft a reply"}}}}}}, nil
			}
			var text string
			switch r := resp.(type) {
			case *mcp.CreateMessageWithToolsResult:
				if len(r.Content) > 0 {
					if tc, ok := r.Content[0].(*mcp.TextContent); ok {
						text = tc.Text
					}
				}
			case *mcp.CreateMessageResult:
				if tc, ok := r.Content.(*mcp.TextContent); ok {
					text = tc.Text
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "draft: " + text}}}, nil
		})
}

// askingClient is a 2026-07-28 client that answers elicitation with "blue" and sampling with
// "Dear Ada", counting what it was asked.
type askingClient struct {
	elicited, sampled atomic.Int32
	asked             atomic.Value // the last elicitation's message
}

func (a *askingClient) options() *mcp.ClientOptions {
	return &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			a.elicited.Add(1)
			a.asked.Store(r.Params.Message)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
		},
		CreateMessageHandler: func(_ context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			a.sampled.Add(1)
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "Dear Ada"}}, nil
		},
	}
}

func callTool(cs *mcp.ClientSession, name string) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{}})
}

func resultText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// hasDenied reports whether a denied record's detail has refused = why.
func hasDenied(recs []audit.Record, why string) bool { return countDenied(recs, why) > 0 }

// countDenied counts the denied records whose detail has refused = why.
func countDenied(recs []audit.Record, why string) int {
	n := 0
	for _, r := range recs {
		if r.Kind == audit.KindDenied && r.Detail["refused"] == why {
			n++
		}
	}
	return n
}

// An input request of a 2026-07-28 result is decided by its method's action, as a server-initiated
// request is: a permitted elicitation reaches the client and the call completes; a refused sampling
// never reaches it and the call fails with an error naming it and the policy.
func TestInputRequestsGated(t *testing.T) {
	r := newRig(t, version20260728, nil)
	addAskingTools(r)
	var denySampling atomic.Bool
	denySampling.Store(true)
	r.policy.deny = func(q Request) error {
		if q.Method == "sampling/createMessage" && denySampling.Load() {
			return errors.New("mcp:sampling on target \"tools\" is not permitted")
		}
		return nil
	}
	ac := &askingClient{}
	cs := r.connectWith(t, "spiffe://example.org/agent", version20260728, ac.options())

	// Permitted elicitation: asked, answered, the call completes.
	res, err := callTool(cs, "ask")
	if err != nil || res.IsError || resultText(res) != `accept {"answer":"blue"}` {
		t.Fatalf("ask: %v %+v", err, res)
	}
	if ac.elicited.Load() != 1 {
		t.Fatalf("elicitation handler called %d times, want 1", ac.elicited.Load())
	}
	if len(r.sink.find(audit.KindStatement, "server elicitation/create")) == 0 {
		t.Error("the permitted input request was not recorded")
	}
	decided := false
	for _, q := range r.policy.requests() {
		if q.Method == "elicitation/create" {
			decided = true
		}
	}
	if !decided {
		t.Error("policy was not asked about the elicitation")
	}

	// Refused sampling: not shown, the call fails naming it and the policy.
	_, err = callTool(cs, "sample")
	if err == nil {
		t.Fatal("sample: the call completed though sampling is refused")
	}
	if msg := err.Error(); !strings.Contains(msg, "sampling/createMessage") || !strings.Contains(msg, "forbid-test") {
		t.Errorf("sample's error does not name the refused request and policy: %v", err)
	}
	if ac.sampled.Load() != 0 {
		t.Fatal("the refused sampling request reached the client")
	}
	if !hasDenied(r.sink.all(), "input request refused") {
		t.Error("the refused input request was not recorded as denied")
	}
	// The call's result is recorded once its answer is written: wait for it (the test's own
	// deadline bounds the wait).
	for tagged, tries := false, 0; !tagged; tries++ {
		for _, rec := range r.sink.all() {
			if rec.Kind == audit.KindResult && rec.Result != nil && rec.Result.Tag == "tools/call sample input refused" {
				tagged = true
			}
		}
		if !tagged && tries > 1000 {
			for _, rec := range r.sink.all() {
				if rec.Result != nil {
					t.Logf("%s %s", rec.Kind, rec.Result.Tag)
				}
			}
			t.Fatal("the call's result record does not say its input request was refused")
		}
		if !tagged {
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Control: with sampling permitted, the same call completes.
	denySampling.Store(false)
	res, err = callTool(cs, "sample")
	if err != nil || resultText(res) != "draft: Dear Ada" || ac.sampled.Load() != 1 {
		t.Fatalf("permitted sample: %v %+v (sampled %d)", err, res, ac.sampled.Load())
	}
	r.noCanary(t)
}

// A tool whose result fields are masked for the caller may not ask it for input: the elicitation's
// message quotes the ssn, which no field path reaches.
func TestInputRequestsOfMaskedTool(t *testing.T) {
	r := newRig(t, version20260728, nil)
	addAskingTools(r)
	r.policy.catalog["ask"] = CatalogTool{Fields: []CatalogField{{Path: "$.ssn"}}}
	r.policy.masks["$.ssn"] = "redact"
	ac := &askingClient{}
	cs := r.connectWith(t, "spiffe://example.org/agent", version20260728, ac.options())
	_, err := callTool(cs, "ask")
	if err == nil || !strings.Contains(err.Error(), "masked") || !strings.Contains(err.Error(), "elicitation/create") {
		t.Fatalf("masked ask: %v", err)
	}
	if ac.elicited.Load() != 0 {
		t.Fatalf("the masked tool's elicitation reached the client (asked %v)", ac.asked.Load())
	}
	if strings.Contains(err.Error(), ssn) {
		t.Fatal("the error quotes the masked value")
	}
	if !hasDenied(r.sink.all(), "input request of a masked tool") {
		t.Error("not recorded as denied")
	}
	// Control: where the caller may read the field unmasked, the same call completes.
	r = newRig(t, version20260728, nil)
	addAskingTools(r)
	r.policy.catalog["ask"] = CatalogTool{Fields: []CatalogField{{Path: "$.ssn"}}}
	cs = r.connectWith(t, "spiffe://example.org/agent", version20260728, ac.options())
	res, err := callTool(cs, "ask")
	if err != nil || resultText(res) != `accept {"answer":"blue"}` || ac.elicited.Load() != 1 {
		t.Fatalf("unmasked ask: %v %+v", err, res)
	}
}

// callWith calls tool with arguments args and the given input responses and request state.
func callWith(cs *mcp.ClientSession, tool string, args map[string]any, resps mcp.InputResponseMap, state string) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args, InputResponses: resps, RequestState: state})
}

// A client's inputResponses reach the server only for input requests the broker relayed to its
// principal, in its session, for the same call, once, with the requestState relayed.
func TestInputResponsesSolicitedOnly(t *testing.T) {
	r := newRig(t, version20260728, nil)
	addAskingTools(r)
	manual := &mcp.ClientOptions{MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}
	a := r.connectWith(t, "spiffe://example.org/agent", version20260728, manual)
	b := r.connectWith(t, "spiffe://example.org/other", version20260728, manual)
	args := map[string]any{}
	answer := func(marker string) mcp.InputResponseMap {
		return mcp.InputResponseMap{"q": &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": marker}}}
	}
	ask := func(cs *mcp.ClientSession) {
		t.Helper()
		res, err := callWith(cs, "ask", args, nil, "")
		if err != nil || !res.NeedsInput() || res.InputRequests["q"] == nil || res.RequestState != "state-1" {
			t.Fatalf("ask: %v %+v", err, res)
		}
	}
	refused := func(name string, cs *mcp.ClientSession, tool string, args map[string]any, resps mcp.InputResponseMap, state, marker, why string) {
		t.Helper()
		before := countDenied(r.sink.all(), why)
		_, err := callWith(cs, tool, args, resps, state)
		if err == nil {
			t.Fatalf("%s: the call was relayed", name)
		}
		if r.shop.saw(marker) {
			t.Fatalf("%s: the answer reached the server", name)
		}
		if countDenied(r.sink.all(), why) != before+1 {
			t.Errorf("%s: no denied record %q (error %v)", name, why, err)
		}
	}

	// Unsolicited: no input request was relayed.
	refused("unsolicited", a, "ask", args, answer("m-unsolicited"), "state-1", "m-unsolicited", "unsolicited inputResponses")

	ok := func(name string) {
		t.Helper()
		res, err := callWith(a, "ask", args, answer("m-"+name), "state-1")
		if err != nil || res.IsError || resultText(res) != `accept {"answer":"m-`+name+`"}` {
			t.Fatalf("%s: solicited answer: %v %+v", name, err, res)
		}
	}

	// Foreign: another principal answers what was relayed to a; then a call with other arguments.
	ask(a)
	refused("foreign principal", b, "ask", args, answer("m-foreign"), "state-1", "m-foreign", "unsolicited inputResponses")
	refused("other arguments", a, "ask", map[string]any{"x": 1}, answer("m-args"), "state-1", "m-args", "unsolicited inputResponses")
	ok("after-foreign") // control: a's own answer passes
	// A forged requestState.
	ask(a)
	refused("requestState", a, "ask", args, answer("m-state"), "forged", "m-state", "requestState not relayed")
	ok("after-state")
	// A key never asked.
	ask(a)
	refused("key", a, "ask", args, mcp.InputResponseMap{"zz": &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "m-key"}}}, "state-1", "m-key", "unsolicited input response")
	// An answer of another kind under the key.
	ask(a)
	refused("kind", a, "ask", args, mcp.InputResponseMap{"q": &mcp.ListRootsResult{Roots: []*mcp.Root{{URI: "file:///m-kind"}}}}, "state-1", "m-kind", "input response of another kind")

	// Control: the answer to what was relayed to a passes, once.
	ask(a)
	ok("once")
	refused("replay", a, "ask", args, answer("m-replay"), "state-1", "m-replay", "unsolicited inputResponses")
}

// A prompts/get result's input request is gated as a tool's is: a refused roots/list fails the
// prompt naming it; permitted, the prompt completes.
func TestInputRequestsOfPrompt(t *testing.T) {
	r := newRig(t, version20260728, nil)
	r.shop.srv.AddPrompt(&mcp.Prompt{Name: "rooted", Description: "Asks for roots."},
		func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			resp, ok := req.Params.InputResponses["r"]
			if !ok {
				return &mcp.GetPromptResult{InputRequests: mcp.InputRequestMap{"r": &mcp.ListRootsParams{}}}, nil
			}
			lr, _ := resp.(*mcp.ListRootsResult)
			n := -1
			if lr != nil {
				n = len(lr.Roots)
			}
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "roots " + strconv.Itoa(n)}}}}, nil
		})
	var denyRoots atomic.Bool
	denyRoots.Store(true)
	r.policy.deny = func(q Request) error {
		if q.Method == "roots/list" && denyRoots.Load() {
			return errors.New("mcp:roots on target \"tools\" is not permitted")
		}
		return nil
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	c.AddRoots(&mcp.Root{URI: "file:///work"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.endpoint(), HTTPClient: r.httpClient(t, "spiffe://example.org/agent"), MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version20260728})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	_, err = cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "rooted"})
	if err == nil || !strings.Contains(err.Error(), "roots/list") || !strings.Contains(err.Error(), "forbid-test") {
		t.Fatalf("refused roots: %v", err)
	}
	if r.shop.saw("file:///work") {
		t.Fatal("the client's roots reached the server though roots/list was refused")
	}
	denyRoots.Store(false)
	res, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "rooted"})
	if err != nil || len(res.Messages) != 1 {
		t.Fatalf("permitted roots: %v %+v", err, res)
	}
	if tc, ok := res.Messages[0].Content.(*mcp.TextContent); !ok || tc.Text != "roots 1" {
		t.Errorf("permitted roots: %+v", res.Messages[0].Content)
	}
}

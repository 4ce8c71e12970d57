package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// maxAPIResponse bounds an approvals API response.
const maxAPIResponse = 4 << 20

// approvalsFlags are the flags every approvals subcommand takes.
type approvalsFlags struct {
	admin, issuer, clientID, caFile, tokenFile *string
}

func addApprovalsFlags(fs *flag.FlagSet) approvalsFlags {
	return approvalsFlags{
		admin:     fs.String("admin", "http://127.0.0.1:8210", "the broker's admin `URL` (https, or http on a loopback address)"),
		issuer:    fs.String("issuer", os.Getenv("SVIDBROKER_OIDC_ISSUER"), "the approvers' OpenID provider (`URL`; default $SVIDBROKER_OIDC_ISSUER)"),
		clientID:  fs.String("client-id", envOr("SVIDBROKER_OIDC_CLIENT_ID", "svidbroker-cli"), "the CLI's client `ID` at the provider (a public client with the device flow)"),
		caFile:    fs.String("ca-file", "", "PEM `file` trusted for the provider's certificate (default: the system's roots)"),
		tokenFile: fs.String("token-file", "", "keep the ID token in this `file` (mode 0600) and reuse it until it expires"),
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// approvalsCmd runs `svidbroker approvals list|approve|deny`.
func approvalsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name, err := subcommand("approvals", args, stdout, stderr)
	if err != nil {
		return err
	}
	fs := newFlags(name)
	af := addApprovalsFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	reason := fs.String("reason", "", "why (recorded in the audit log with your identity)")
	scope := fs.String("scope", "once", "what the approval covers: once, fingerprint (this caller's operations of the same fingerprint) or session")
	forD := fs.Duration("for", 0, "how long a fingerprint or session approval lasts (1m to 24h)")
	if err := parseFlags(fs, name, args[1:], stdout, stderr); err != nil {
		return err
	}
	rest := fs.Args()
	switch {
	case name == "approvals list" && len(rest) != 0:
		return usageError(stderr, name, "takes no arguments")
	case name != "approvals list" && len(rest) != 1:
		return usageError(stderr, name, "give one request ID (list them with 'svidbroker approvals list')")
	case *af.issuer == "":
		return usageError(stderr, name, "--issuer URL (or $SVIDBROKER_OIDC_ISSUER) is required: the approvers' OpenID provider")
	}
	base, err := adminURL(*af.admin)
	if err != nil {
		return usageError(stderr, name, "%v", err)
	}
	token, err := idToken(ctx, af, stderr)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, path string, body any) ([]byte, error) {
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base.JoinPath(path).String(), rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("the broker's approvals API: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("the broker answered %s: %s", resp.Status, strings.TrimSpace(printableText(b)))
		}
		return b, nil
	}
	switch name {
	case "approvals list":
		b, err := call(http.MethodGet, "/approvals", nil)
		if err != nil {
			return err
		}
		var reqs []approval.Request
		if err := json.Unmarshal(b, &reqs); err != nil {
			return fmt.Errorf("the broker's answer does not decode: %w", err)
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(reqs)
		}
		if len(reqs) == 0 {
			fmt.Fprintln(stdout, "no pending requests")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTARGET\tCALLER\tOWNER\tAPPROVALS\tEXPIRES\tOPERATION")
		for _, r := range reqs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d of %d\t%s\t%s\n", r.ID, r.Target, r.SPIFFEID, orDash(r.Owner), len(r.Approvals), r.Required,
				r.Expires.Local().Format(time.TimeOnly), printableText([]byte(r.Statement)))
		}
		return tw.Flush()
	default:
		verb := strings.TrimPrefix(name, "approvals ")
		body := approval.DecisionBody{Reason: *reason}
		if verb == "approve" {
			body.Scope = *scope
			if *forD != 0 {
				body.For = forD.String()
			}
		}
		b, err := call(http.MethodPost, "/approvals/"+url.PathEscape(rest[0])+"/"+verb, body)
		if err != nil {
			return err
		}
		var r approval.Request
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("the broker's answer does not decode: %w", err)
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(r)
		}
		approvals := 0
		for _, v := range r.Approvals {
			if v.Approve {
				approvals++
			}
		}
		fmt.Fprintf(stdout, "request %s is %s (%d of %d approvals)\n", r.ID, r.State, approvals, r.Required)
		return nil
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printableText drops control characters, so that an operation's text cannot rewrite the terminal.
func printableText(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return -1
		}
		return r
	}, string(b))
}

// adminURL checks that an ID token sent to raw stays private: https, or http on loopback.
func adminURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--admin %q is not a URL such as http://127.0.0.1:8210", raw)
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); host == "localhost" || err == nil && ip.IsLoopback() {
			return u, nil
		}
		return nil, fmt.Errorf("--admin %q: your ID token would cross the network in clear; use https, or a loopback address", raw)
	}
	return nil, fmt.Errorf("--admin %q: use https, or http on a loopback address", raw)
}

// idToken returns a current ID token: the token file's while it verifies, else a new one from a
// device-flow login (saved to the token file when one is given).
func idToken(ctx context.Context, af approvalsFlags, stderr io.Writer) (string, error) {
	v, err := oidc.New(ctx, oidc.Config{IssuerURL: *af.issuer, ClientID: *af.clientID, CAFile: *af.caFile})
	if err != nil {
		return "", err
	}
	if *af.tokenFile != "" {
		if b, err := os.ReadFile(*af.tokenFile); err == nil {
			raw := strings.TrimSpace(string(b))
			if _, err := v.VerifyIDToken(ctx, raw, ""); err == nil {
				return raw, nil
			}
		}
	}
	d, err := v.StartDevice(ctx)
	if err != nil {
		return "", err
	}
	if d.VerificationURIComplete != "" {
		fmt.Fprintf(stderr, "To log in, open %s\n(or open %s and enter the code %s)\n", d.VerificationURIComplete, d.VerificationURI, d.UserCode)
	} else {
		fmt.Fprintf(stderr, "To log in, open %s and enter the code %s\n", d.VerificationURI, d.UserCode)
	}
	p, raw, err := v.PollDeviceToken(ctx, d)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "logged in as %s\n", p.Email)
	if *af.tokenFile != "" {
		if err := writePrivate(*af.tokenFile, raw); err != nil {
			return "", err
		}
	}
	return raw, nil
}

// writePrivate writes s to path, readable by its owner alone.
func writePrivate(path, s string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

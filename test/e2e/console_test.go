package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestConsoleApprovesAHeldStatementInChromium: the broker serves its console (a console block), the
// stack's OpenID provider logs the approver in through its real login page in headless Chromium, the
// approver approves the migrator's held DDL there and the waiting psql goes on; then the console
// replays that session after verifying the audit chain. Screenshots are saved as artifacts.
func TestConsoleApprovesAHeldStatementInChromium(t *testing.T) {
	s, _ := shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	consoleURL := "https://" + addr
	o, err := s.StartOIDC(ctx, stack.OIDCOptions{Name: "console-oidc", RedirectURIs: []string{consoleURL + "/oidc/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	var password string
	for _, u := range o.Users {
		if u.Username == stack.ApproverEmail {
			password = u.Password
		}
	}

	// The console's certificate, its client secret and its view policy, readable by the broker's uid.
	dir := filepath.Join(s.Dir, "console-files")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, cert, err := oidcprovider.LoopbackCert()
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(o.ConsoleSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"console.crt":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"console.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"client-secret":   secret,
		"provider-ca.pem": mustRead(t, o.CAFile),
		"view.cedar":      []byte(`permit (principal in Group::"dba", action == Action::"console:view", resource);` + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	broker, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.ChownTree(dir, int(broker.UID), int(broker.UID)); err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf(`console {
  listen           = %q
  cert_file        = %q
  key_file         = %q
  view_policy_file = %q
  oidc {
    issuer             = %q
    client_id          = %q
    client_secret_file = %q
    ca_file            = %q
  }
}
`, addr, filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key"), filepath.Join(dir, "view.cedar"),
		o.Issuer, stack.OIDCConsoleClient, filepath.Join(dir, "client-secret"), filepath.Join(dir, "provider-ca.pem"))
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "console", Binary: brokerBin, Extra: block})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()

	held := startPsql(t, b, clientFiles(t, s, stack.PersonaMigrator), "CREATE TEMP TABLE held_by_console (a int)")
	done := make(chan error, 1)
	go func() { done <- held.Wait() }()
	req := waitPending(t, b, "held_by_console")
	if req.SPIFFEID != mustPersonaID(t, s, stack.PersonaMigrator) {
		t.Fatalf("request %+v", req)
	}

	cctx := chrome(t, ctx)
	var notice, verified string
	err = chromedp.Do(cctx,
		chromedp.Navigate(consoleURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		artifact(t, "01-provider-login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), stack.ApproverEmail),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#approve-`+req.ID)),
		artifact(t, "02-held-ddl"),
		chromedp.SendKeys(chromedp.CSS(`#reason-`+req.ID), "temp table for the migration"),
		chromedp.Click(chromedp.CSS(`#approve-`+req.ID)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)),
		keep(chromedp.Text(chromedp.CSS(`.notice`)), &notice),
		artifact(t, "03-approved"),
	)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(held.out.String(), "CREATE TABLE") {
			t.Fatalf("the approved statement's psql: %v\n%s", err, held.out.String())
		}
	case <-ctx.Done():
		t.Fatal("the held statement did not go on after the approval")
	}
	if !strings.Contains(notice, "Approved") {
		t.Fatalf("notice %q", notice)
	}
	err = chromedp.Do(cctx,
		chromedp.Navigate(consoleURL+"/sessions"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/sessions/`+req.Session+`"]`)),
		artifact(t, "04-sessions"),
		chromedp.Click(chromedp.CSS(`a[href="/sessions/`+req.Session+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#verified`)),
		keep(chromedp.Text(chromedp.CSS(`#verified`)), &verified),
		artifact(t, "05-replay"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(verified, "Audit chain verified") {
		t.Fatalf("replay says %q", verified)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chrome starts headless Chromium. The console's and the provider's test certificates come from CAs
// made for the test, which the browser does not trust, so certificate errors are ignored.
func chrome(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0),
		chromedp.WindowSize(1280, 900))
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		opts = append(opts, chromedp.ExecPath("/usr/bin/chromium"))
	}
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancel)
	cctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	return cctx
}

func keep[T any](a chromedp.Action[T], v *T) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		x, err := a(ctx, tg)
		*v = x
		return err
	})
}

// artifact saves a full-page screenshot in the test's artifact directory and logs its path.
func artifact(t *testing.T, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		path := filepath.Join(t.ArtifactDir(), name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			return err
		}
		t.Logf("screenshot %s", path)
		return nil
	})
}

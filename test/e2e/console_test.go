package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	addr, err := stack.ConsolePort()
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.StartOIDC(ctx, stack.OIDCOptions{Name: "console-oidc", RedirectURIs: []string{stack.ConsoleCallback(addr)}})
	if err != nil {
		t.Fatal(err)
	}
	var password string
	for _, u := range o.Users {
		if u.Username == stack.ApproverEmail {
			password = u.Password
		}
	}
	console, err := s.ConsoleFor("console", addr, o)
	if err != nil {
		t.Fatal(err)
	}
	consoleURL := console.URL
	// Approvals by people: the console decides through the desk (Cedar's approve, separation of
	// duties, a kept journal), as approver = "oidc" runs in production.
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "console", Binary: brokerBin, Approver: "oidc",
		Extra: console.HCL + approversBlock(o, "journal", approvalsStateDir(t, s, "svidbroker-console"))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()

	held := startPsql(t, b, clientFiles(t, s, stack.PersonaMigrator), "CREATE TEMP TABLE held_by_console (a int)")
	done := make(chan error, 1)
	go func() { done <- held.Wait() }()
	req := waitPendingOIDC(t, b, idTokenOf(t, o, stack.ApproverEmail), "held_by_console")
	if req.SPIFFEID != mustPersonaID(t, s, stack.PersonaMigrator) {
		t.Fatalf("request %+v", req)
	}

	cctx := chrome(t, ctx)
	var notice, verified, card string
	err = chromedp.Do(cctx,
		chromedp.Navigate(consoleURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		artifact(t, "01-provider-login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), stack.ApproverEmail),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#approve-`+req.ID)),
		keep(chromedp.Text(chromedp.CSS(`section[aria-labelledby="req-`+req.ID+`"]`)), &card),
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
	// The request says what SPIRE attested about the agent and what an approval would bind.
	for _, want := range []string{"SPIRE attested", "unix:uid:", "Fingerprint", "sql:", "0 of 1 needed"} {
		if !strings.Contains(card, want) {
			t.Errorf("the pending request's card does not say %q:\n%s", want, card)
		}
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

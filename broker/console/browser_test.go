package console

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds the browser; the test fails rather than skips without it (install the Debian
// package chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: apt-get install -y chromium")
	return ""
}

// newChrome starts headless Chromium at a laptop's width. The console's and the provider's test CAs
// are not in the browser's trust store, so certificate errors are ignored: what is under test is the
// console, and the Go tests check TLS verification.
func newChrome(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 45*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// into runs a and keeps its value in v.
func into[T any](a chromedp.Action[T], v *T) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		x, err := a(ctx, tg)
		*v = x
		return err
	})
}

// shot saves a full-page screenshot as a test artifact and logs its path.
func shot(t *testing.T, name string) chromedp.Action[chromedp.Void] {
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

// TestApproverLogsInApprovesAndReplaysInChromium drives headless Chromium through the provider's
// real login page: the approver sees the held DDL, approves it with a reason, and the waiting call
// goes on; then the sessions page, the replay (after the chain verifies) and the "why" of a decision,
// and the approvals page at a phone's width.
func TestApproverLogsInApprovesAndReplaysInChromium(t *testing.T) {
	h := newHarness(t)
	h.recordSession("s1", "shop", false)
	done := h.hold(heldDDL("r1"))
	ctx := newChrome(t)

	var statement, notice, verified, why string
	err := chromedp.Do(ctx,
		chromedp.Navigate(h.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		shot(t, "01-provider-login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), approverEmail),
		chromedp.SendKeys(chromedp.CSS(`#password`), h.passwords[approverEmail]),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#approve-r1`)),
		into(chromedp.Text(chromedp.CSS(`pre`)), &statement),
		shot(t, "02-approvals"),
		chromedp.SendKeys(chromedp.CSS(`#reason-r1`), "reviewed in CHG-1"),
		chromedp.Click(chromedp.CSS(`#approve-r1`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)),
		into(chromedp.Text(chromedp.CSS(`.notice`)), &notice),
		shot(t, "03-approved"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(statement, "ALTER TABLE orders") || !strings.Contains(notice, "Approved") {
		t.Fatalf("statement %q, notice %q", statement, notice)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held call: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held call did not go on after the approval")
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/sessions"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/sessions/s1"]`)),
		shot(t, "04-sessions"),
		chromedp.Click(chromedp.CSS(`a[href="/sessions/s1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#verified`)),
		into(chromedp.Text(chromedp.CSS(`#verified`)), &verified),
		shot(t, "05-replay"),
		chromedp.Click(chromedp.CSS(`a[href*="why?session=s1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`main dl`)),
		into(chromedp.Text(chromedp.CSS(`main`)), &why),
		shot(t, "06-why"),
		chromedp.Navigate(h.URL+"/can"),
		chromedp.WaitVisible(chromedp.CSS(`#spiffe_id`)),
		shot(t, "07-can"),
		chromedp.EmulateViewport(375, 812),
		chromedp.Navigate(h.URL+"/sessions/s1"),
		chromedp.WaitVisible(chromedp.CSS(`#verified`)),
		shot(t, "08-replay-phone"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(verified, "Audit chain verified") {
		t.Fatalf("replay says %q", verified)
	}
	if !strings.Contains(why, "allowed") || !strings.Contains(why, "connect") {
		t.Fatalf("why says %q", why)
	}
}

// TestConsoleIsKeyboardOperableAtPhoneWidth logs in and decides with the keyboard alone at 375px:
// the page has no horizontal scroll and Tab reaches the approve button.
func TestConsoleIsKeyboardOperableAtPhoneWidth(t *testing.T) {
	h := newHarness(t)
	done := h.hold(heldDDL("r1"))
	ctx := newChrome(t)
	var scrollW, clientW int
	var focused string
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(375, 812),
		chromedp.Navigate(h.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), approverEmail),
		chromedp.SendKeys(chromedp.CSS(`#password`), h.passwords[approverEmail]+"\r"),
		chromedp.WaitVisible(chromedp.CSS(`#approve-r1`)),
		into(chromedp.Evaluate[int](`document.documentElement.scrollWidth`), &scrollW),
		into(chromedp.Evaluate[int](`document.documentElement.clientWidth`), &clientW),
		shot(t, "approvals-phone"),
		chromedp.Focus(chromedp.CSS(`#reason-r1`)),
		chromedp.SendKeys(chromedp.CSS(`#reason-r1`), "ok\t\t\t"), // reason, scope, minutes, then Approve
		into(chromedp.Evaluate[string](`document.activeElement.id`), &focused),
	)
	if err != nil {
		t.Fatal(err)
	}
	if scrollW > clientW {
		t.Errorf("the approvals page scrolls sideways at 375px: %d > %d", scrollW, clientW)
	}
	if focused != "approve-r1" {
		t.Fatalf("Tab from the reason reached %q, not the approve button", focused)
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(`.notice`))); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

package stack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	approveroidc "github.com/svidbroker/svidbroker/broker/approval/oidc"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

// bareStack is a stack that has started nothing yet, for components that need nothing else.
func bareStack(t *testing.T) *Stack {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent is private to this uid, and the provider runs as another.
	dir, err := os.MkdirTemp("", "svidbroker-oidc-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{Dir: dir, LogDir: filepath.Join(dir, "logs"), binDir: bin, ownsDir: true}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestOIDCProviderLogsInDemoPeople starts svidbroker-oidc as the stack does and logs the demo's
// people in through its login page with the broker's relying party, by the code flow and the
// device flow.
func TestOIDCProviderLogsInDemoPeople(t *testing.T) {
	s := bareStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o, err := s.StartOIDC(ctx, OIDCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The passwords are readable by the provider's uid only.
	st, err := os.Stat(filepath.Join(s.Dir, "oidc", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || (os.Geteuid() == 0 && st.Sys().(*syscall.Stat_t).Uid != OIDCUID) {
		t.Fatalf("config.json: mode %v, uid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	console, err := approveroidc.New(ctx, o.ConsoleConfig(DefaultConsoleRedirect))
	if err != nil {
		t.Fatal(err)
	}
	client, err := o.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		email  string
		groups []string
	}{
		{ApproverEmail, []string{"dba", "security"}},
		{AliceEmail, []string{"engineering"}},
		{OwnerEmail, []string{}},
	} {
		t.Run(tc.email, func(t *testing.T) {
			u, err := o.User(tc.email)
			if err != nil {
				t.Fatal(err)
			}
			login, err := console.StartLogin()
			if err != nil {
				t.Fatal(err)
			}
			cb, page, err := oidcprovider.NewBrowser(client, DefaultConsoleRedirect).LogIn(ctx, login.URL, u.Username, u.Password)
			if err != nil {
				t.Fatalf("%v (%+v)", err, page)
			}
			p, err := console.Exchange(ctx, login, cb.Query().Get("state"), cb.Query().Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			if p.Email != tc.email || p.Issuer != o.Issuer || !slices.Equal(p.Groups, tc.groups) {
				t.Fatalf("person = %+v", p)
			}
		})
	}

	cli, err := approveroidc.New(ctx, o.CLIConfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := cli.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := o.User(ApproverEmail)
	if _, err := oidcprovider.NewBrowser(client, "").ResolveDevice(ctx, d.VerificationURIComplete, u.Username, u.Password, true); err != nil {
		t.Fatal(err)
	}
	p, err := cli.PollDevice(ctx, d)
	if err != nil || p.Email != ApproverEmail {
		t.Fatalf("device flow: %+v, %v", p, err)
	}

	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := approveroidc.New(ctx, o.CLIConfig()); err == nil {
		t.Fatal("discovery still answers after Stop")
	}
}

package oidc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

// The console's login: send the browser to Login.URL, keep the Login server-side, and on the
// callback exchange the code for the person. Here the test provider plays the identity provider and
// oidcprovider.Browser plays the person's browser.
func ExampleVerifier_Exchange() {
	ctx := context.Background()
	const callback = "https://console.example.test/oidc/callback"
	idp, err := oidcprovider.StartLocal(&oidcprovider.Config{
		Users: []oidcprovider.User{{Username: "approver@example.com", Password: "pw", Email: "approver@example.com",
			EmailVerified: true, Groups: []string{"dba", "security"}}},
		Clients: []oidcprovider.Client{{ID: "console", Secret: "console-secret", Type: "web", RedirectURIs: []string{callback}}},
	}, nil)
	if err != nil {
		panic(err)
	}
	defer idp.Close()
	dir, _ := os.MkdirTemp("", "oidc-example-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "ca.pem"), idp.CAPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("console-secret\n"), 0o600)

	v, err := oidc.New(ctx, oidc.Config{
		IssuerURL:        idp.Issuer(),
		ClientID:         "console",
		ClientSecretFile: filepath.Join(dir, "secret"),
		RedirectURL:      callback,
		CAFile:           filepath.Join(dir, "ca.pem"),
	})
	if err != nil {
		panic(err)
	}
	login, err := v.StartLogin()
	if err != nil {
		panic(err)
	}
	cb, _, err := oidcprovider.NewBrowser(idp.Client(), callback).LogIn(ctx, login.URL, "approver@example.com", "pw")
	if err != nil {
		panic(err)
	}
	p, err := v.Exchange(ctx, login, cb.Query().Get("state"), cb.Query().Get("code"))
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Email, p.Groups)
	// Output: approver@example.com [dba security]
}

package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Browser plays a person at the provider's pages in tests: a cookie-keeping HTTPS client that
// follows redirects, reads the HTML forms it is shown and posts them. It is the headless stand-in
// for a real browser where a test needs no JavaScript.
type Browser struct {
	client *http.Client
	// stopAt is a URL prefix (the relying party's redirect URI) at which redirects stop.
	stopAt string
}

// NewBrowser returns a browser that trusts the given transport's roots (use Local.Client's, or one
// built from the stack's CA) and stops following redirects at any URL starting with stopAt.
func NewBrowser(base *http.Client, stopAt string) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{stopAt: stopAt}
	b.client = &http.Client{Transport: base.Transport, Timeout: base.Timeout, Jar: jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 10 {
				return errors.New("more than 10 redirects")
			}
			if stopAt != "" && strings.HasPrefix(req.URL.String(), stopAt) {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	return b
}

// Page is a response the browser rendered: where it ended, its status, and its body.
type Page struct {
	URL    *url.URL
	Status int
	Body   string
	// Location is the redirect that stopped the browser at stopAt, if any.
	Location *url.URL
}

func (b *Browser) do(req *http.Request) (*Page, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	p := &Page{URL: resp.Request.URL, Status: resp.StatusCode, Body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
		p.Location, err = resp.Request.URL.Parse(loc)
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Get loads a URL.
func (b *Browser) Get(ctx context.Context, u string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// Submit posts the page's first form with its fields as the page set them, overridden by set.
func (b *Browser) Submit(ctx context.Context, p *Page, set url.Values) (*Page, error) {
	action, fields, err := firstForm(p.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.URL, err)
	}
	for k, v := range set {
		fields[k] = v
	}
	target, err := p.URL.Parse(action)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), strings.NewReader(fields.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// LogIn follows an authorization URL to the login page, signs in, and returns the redirect to the
// relying party (the URL carrying code and state). A page that does not redirect there (a wrong
// password, say) is returned with an error.
func (b *Browser) LogIn(ctx context.Context, authURL, username, password string) (*url.URL, *Page, error) {
	p, err := b.Get(ctx, authURL)
	if err != nil {
		return nil, nil, err
	}
	if p.Location != nil {
		return p.Location, p, nil // already signed in, or refused before the login page
	}
	if p.Status != http.StatusOK {
		return nil, p, fmt.Errorf("the login page answered %d: %s", p.Status, p.Body)
	}
	p, err = b.Submit(ctx, p, url.Values{"username": {username}, "password": {password}})
	if err != nil {
		return nil, nil, err
	}
	if p.Location == nil {
		return nil, p, fmt.Errorf("signing in as %s did not return to the application (status %d)", username, p.Status)
	}
	return p.Location, p, nil
}

// ResolveDevice opens a device verification URL (the complete one, carrying the user code), signs
// in and allows or denies the device.
func (b *Browser) ResolveDevice(ctx context.Context, verificationURL, username, password string, allow bool) (*Page, error) {
	p, err := b.Get(ctx, verificationURL)
	if err != nil {
		return nil, err
	}
	action := "deny"
	if allow {
		action = "allow"
	}
	p, err = b.Submit(ctx, p, url.Values{"username": {username}, "password": {password}, "action": {action}})
	if err != nil {
		return nil, err
	}
	if p.Status != http.StatusOK {
		return p, fmt.Errorf("the device page answered %d", p.Status)
	}
	return p, nil
}

// firstForm parses an HTML page and returns its first form's action and input values.
func firstForm(page string) (string, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return "", nil, err
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return "", nil, errors.New("the page has no form")
	}
	fields := url.Values{}
	var inputs func(*html.Node)
	inputs = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			if name := attr(n, "name"); name != "" {
				fields.Set(name, attr(n, "value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			inputs(c)
		}
	}
	inputs(form)
	return attr(form, "action"), fields, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

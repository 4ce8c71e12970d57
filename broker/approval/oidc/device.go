package oidc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// maxDeviceWait bounds a device login however long the provider lets its code live.
const maxDeviceWait = 15 * time.Minute

// DeviceLogin is a device-flow login in progress: show the person UserCode and VerificationURI
// (or VerificationURIComplete), then call PollDevice.
type DeviceLogin struct {
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	// Expiry is when the code stops being usable.
	Expiry time.Time

	resp *oauth2.DeviceAuthResponse
}

// StartDevice asks the provider for a device code.
func (v *Verifier) StartDevice(ctx context.Context) (*DeviceLogin, error) {
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, v.client), v.cfg.Timeout)
	defer cancel()
	if v.oauth.Endpoint.DeviceAuthURL == "" {
		return nil, fmt.Errorf("%w: the provider's discovery document has no device_authorization_endpoint", ErrProvider)
	}
	r, err := v.oauth.DeviceAuth(ctx)
	if err != nil {
		return nil, tokenEndpointError("start the device flow", err)
	}
	if r.Expiry.IsZero() || time.Until(r.Expiry) > maxDeviceWait {
		r.Expiry = time.Now().Add(maxDeviceWait)
	}
	return &DeviceLogin{UserCode: r.UserCode, VerificationURI: r.VerificationURI,
		VerificationURIComplete: r.VerificationURIComplete, Expiry: r.Expiry, resp: r}, nil
}

// PollDevice waits, at the interval the provider asks for, until the person allows or denies the
// device code, the code expires, or ctx ends; then it verifies the ID token and returns the person.
func (v *Verifier) PollDevice(ctx context.Context, d *DeviceLogin) (Person, error) {
	if d == nil || d.resp == nil {
		return Person{}, errors.New("oidc: PollDevice needs the DeviceLogin StartDevice returned")
	}
	pctx, cancel := context.WithDeadline(context.WithValue(ctx, oauth2.HTTPClient, v.client), d.Expiry)
	defer cancel()
	tok, err := v.oauth.DeviceAccessToken(pctx, d.resp)
	if err != nil {
		return Person{}, tokenEndpointError("wait for the device login", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Person{}, fmt.Errorf("%w: the token response has no id_token; is \"openid\" among the scopes?", ErrToken)
	}
	vctx, vcancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer vcancel()
	return v.verify(vctx, raw, "", false)
}

package oidc

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// PollDeviceToken is PollDevice that also returns the raw ID token it verified, for a client that
// presents it to the broker (`svidbroker approvals` to the approvals API). The token is a
// credential: keep it out of logs, and in a file only its owner reads.
func (v *Verifier) PollDeviceToken(ctx context.Context, d *DeviceLogin) (Person, string, error) {
	if d == nil || d.resp == nil {
		return Person{}, "", errors.New("oidc: PollDeviceToken needs the DeviceLogin StartDevice returned")
	}
	pctx, cancel := context.WithDeadline(context.WithValue(ctx, oauth2.HTTPClient, v.client), d.Expiry)
	defer cancel()
	tok, err := v.oauth.DeviceAccessToken(pctx, d.resp)
	if err != nil {
		return Person{}, "", tokenEndpointError("wait for the device login", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Person{}, "", fmt.Errorf("%w: the token response has no id_token; is \"openid\" among the scopes?", ErrToken)
	}
	vctx, vcancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer vcancel()
	p, err := v.verify(vctx, raw, "", false)
	if err != nil {
		return Person{}, "", err
	}
	return p, raw, nil
}

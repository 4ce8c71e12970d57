package oidcprovider

import (
	"context"
	"errors"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// StoreDeviceAuthorization records a device code the library issued.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[clientID]; !ok {
		return errors.New("no such client")
	}
	s.purge(time.Now())
	if len(s.devices) >= maxPending {
		return errors.New("too many pending device codes")
	}
	if _, ok := s.users[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceEntry{userCode: userCode, state: &op.DeviceAuthorizationState{
		ClientID: clientID, Scopes: scopes, Expires: expires,
	}}
	s.users[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState answers the client's polls. Once approved, the state is handed out
// once: the device code cannot be exchanged twice.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errors.New("no such device code for this client")
	}
	st := *d.state
	if st.Done || st.Denied {
		delete(s.devices, deviceCode)
		delete(s.users, d.userCode)
	}
	return &st, nil
}

// pendingDevice returns the state of a device code awaiting its user, by user code.
func (s *storage) pendingDevice(userCode string) (op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.users[userCode]]
	if !ok || time.Now().After(d.state.Expires) || d.state.Done || d.state.Denied {
		return op.DeviceAuthorizationState{}, errors.New("this code is unknown, expired or already used; start again on the device")
	}
	return *d.state, nil
}

// resolveDevice completes (allow) or denies a pending device code for this user.
func (s *storage) resolveDevice(userCode string, u User, allow bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.users[userCode]]
	if !ok || time.Now().After(d.state.Expires) || d.state.Done || d.state.Denied {
		return errors.New("this code is unknown, expired or already used; start again on the device")
	}
	if allow {
		d.state.Subject, d.state.AuthTime, d.state.AMR, d.state.Done = u.Subject, time.Now(), []string{"pwd"}, true
	} else {
		d.state.Denied = true
	}
	return nil
}

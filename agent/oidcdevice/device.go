// SPDX-License-Identifier: Apache-2.0

// Package oidcdevice gets an OIDC ID token for a person at a terminal with
// the OAuth 2.0 device authorization grant (RFC 8628): the CLI shows a URL
// and a code, the person signs in with a browser anywhere, and the CLI
// polls the token endpoint until the provider hands out the tokens. It is
// how approvers without a browser on the host (ssh sessions) prove who they
// are to the daemon.
package oidcdevice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Errors of the device flow.
var (
	// ErrNoDeviceEndpoint means the issuer's discovery document has no
	// device_authorization_endpoint: it does not offer the device flow.
	ErrNoDeviceEndpoint = errors.New("issuer does not offer the device authorization flow")
	// ErrAccessDenied means the person declined at the provider.
	ErrAccessDenied = errors.New("sign-in was declined")
	// ErrCodeExpired means nobody completed the sign-in before the
	// device code expired.
	ErrCodeExpired = errors.New("device code expired before sign-in completed")
	// ErrNoIDToken means the provider answered without an id_token (is
	// the openid scope allowed for this client?).
	ErrNoIDToken = errors.New("provider returned no id_token")
)

// Config says which provider and client to use.
type Config struct {
	// Issuer is the OIDC issuer URL; its discovery document names the
	// endpoints.
	Issuer string
	// ClientID is a public client registered at the provider for the
	// device flow (no secret).
	ClientID string
	// Scopes are requested besides "openid" (for example "groups" where a
	// provider puts groups in the token only when asked).
	Scopes []string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Prompt is what to show the person.
type Prompt struct {
	// VerificationURI is where to sign in, and UserCode what to enter.
	VerificationURI string
	UserCode        string
	// VerificationURIComplete, when the provider gives one, already
	// carries the code.
	VerificationURIComplete string
	// Expires is when the code stops working.
	Expires time.Time
}

// Login runs the device flow and returns the raw ID token. prompt is
// called once, before polling starts. Login returns when the person has
// signed in, declined, the code expired or ctx ended.
func Login(ctx context.Context, cfg Config, prompt func(Prompt)) (string, error) {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("discover %s: %w", cfg.Issuer, err)
	}
	var ep struct {
		Device string `json:"device_authorization_endpoint"`
		Token  string `json:"token_endpoint"`
	}
	if err := p.Claims(&ep); err != nil {
		return "", fmt.Errorf("discover %s: %w", cfg.Issuer, err)
	}
	if ep.Device == "" {
		return "", fmt.Errorf("%s: %w", cfg.Issuer, ErrNoDeviceEndpoint)
	}
	if ep.Token == "" {
		return "", fmt.Errorf("discover %s: no token_endpoint", cfg.Issuer)
	}

	scope := strings.Join(append([]string{oidc.ScopeOpenID}, cfg.Scopes...), " ")
	var da struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	status, body, err := postForm(ctx, hc, ep.Device, url.Values{"client_id": {cfg.ClientID}, "scope": {scope}})
	if err != nil {
		return "", fmt.Errorf("device authorization: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("device authorization: %s", oauthError(status, body))
	}
	if err := json.Unmarshal(body, &da); err != nil || da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return "", fmt.Errorf("device authorization: malformed answer")
	}
	if da.ExpiresIn <= 0 {
		da.ExpiresIn = 600
	}
	// RFC 8628 section 3.2: without an interval, poll every 5 seconds.
	interval := 5 * time.Second
	if da.Interval > 0 {
		interval = time.Duration(da.Interval) * time.Second
	}
	expires := time.Now().Add(time.Duration(da.ExpiresIn) * time.Second)
	if prompt != nil {
		prompt(Prompt{VerificationURI: da.VerificationURI, UserCode: da.UserCode,
			VerificationURIComplete: da.VerificationURIComplete, Expires: expires})
	}

	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {da.DeviceCode}, "client_id": {cfg.ClientID}}
	for {
		if time.Now().After(expires) {
			return "", ErrCodeExpired
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
		status, body, err := postForm(ctx, hc, ep.Token, form)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		if status == http.StatusOK {
			var tok struct {
				IDToken string `json:"id_token"`
			}
			if err := json.Unmarshal(body, &tok); err != nil {
				return "", fmt.Errorf("token: malformed answer")
			}
			if tok.IDToken == "" {
				return "", ErrNoIDToken
			}
			return tok.IDToken, nil
		}
		var oe struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &oe)
		switch oe.Error {
		case "authorization_pending":
		case "slow_down":
			// Section 3.5: add 5 seconds to the interval.
			interval += 5 * time.Second
		case "access_denied":
			return "", ErrAccessDenied
		case "expired_token":
			return "", ErrCodeExpired
		default:
			return "", fmt.Errorf("token: %s", oauthError(status, body))
		}
	}
}

// postForm posts a form and returns the status and up to 1 MiB of body.
func postForm(ctx context.Context, hc *http.Client, u string, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// oauthError describes an OAuth error answer (RFC 6749 section 5.2).
func oauthError(status int, body []byte) string {
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &oe) == nil && oe.Error != "" {
		if oe.Description != "" {
			return oe.Error + ": " + oe.Description
		}
		return oe.Error
	}
	return fmt.Sprintf("HTTP %d", status)
}

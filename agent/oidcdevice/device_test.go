// SPDX-License-Identifier: Apache-2.0

package oidcdevice_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/tollgate-dev/tollgate/agent/oidcdevice"
)

// deviceIdP is an OIDC provider with the device flow: go-oidc's oidctest
// serves discovery keys; this adds the device and token endpoints. outcome
// is what the person does at the verification URL.
type deviceIdP struct {
	*httptest.Server
	key      *rsa.PrivateKey
	noDevice bool

	mu      sync.Mutex
	outcome string // "", "approve", "deny", "expire"
	polls   int
	scope   string
}

func newDeviceIdP(t *testing.T) *deviceIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := &deviceIdP{key: key}
	keys := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k", Algorithm: oidc.RS256}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		d := map[string]any{"issuer": idp.URL, "jwks_uri": idp.URL + "/keys", "token_endpoint": idp.URL + "/token",
			"authorization_endpoint": idp.URL + "/auth", "id_token_signing_alg_values_supported": []string{"RS256"}}
		if !idp.noDevice {
			d["device_authorization_endpoint"] = idp.URL + "/device"
		}
		json.NewEncoder(w).Encode(d)
	})
	mux.Handle("GET /keys", keys)
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("client_id") != "tollgate-cli" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		idp.mu.Lock()
		idp.scope = r.FormValue("scope")
		idp.mu.Unlock()
		fmt.Fprintf(w, `{"device_code":"dc-1","user_code":"WDJB-MJHT","verification_uri":"%s/activate","expires_in":60,"interval":1}`, idp.URL)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || r.FormValue("device_code") != "dc-1" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		idp.mu.Lock()
		idp.polls++
		outcome := idp.outcome
		idp.mu.Unlock()
		switch outcome {
		case "approve":
			claims := fmt.Sprintf(`{"iss":%q,"aud":"tollgate-cli","sub":"alice","groups":["dba"],"exp":%d}`, idp.URL, time.Now().Add(time.Hour).Unix())
			fmt.Fprintf(w, `{"access_token":"at","token_type":"Bearer","id_token":%q}`, oidctest.SignIDToken(idp.key, "k", oidc.RS256, claims))
		case "deny":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"access_denied"}`)
		case "expire":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"expired_token"}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"authorization_pending"}`)
		}
	})
	idp.Server = httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	return idp
}

func TestLogin(t *testing.T) {
	idp := newDeviceIdP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var shown oidcdevice.Prompt
	tok, err := oidcdevice.Login(ctx, oidcdevice.Config{Issuer: idp.URL, ClientID: "tollgate-cli", Scopes: []string{"groups"}},
		func(p oidcdevice.Prompt) {
			shown = p
			// The person signs in after the first poll.
			go func() {
				for {
					idp.mu.Lock()
					if idp.polls > 0 {
						idp.outcome = "approve"
						idp.mu.Unlock()
						return
					}
					idp.mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			}()
		})
	if err != nil {
		t.Fatal(err)
	}
	if shown.UserCode != "WDJB-MJHT" || shown.VerificationURI != idp.URL+"/activate" || shown.Expires.IsZero() {
		t.Fatalf("prompt %+v", shown)
	}
	if idp.scope != "openid groups" {
		t.Errorf("scope %q", idp.scope)
	}
	// The token is the provider's, and verifies against its keys.
	ver := oidc.NewVerifier(idp.URL, oidc.NewRemoteKeySet(ctx, idp.URL+"/keys"), &oidc.Config{ClientID: "tollgate-cli"})
	it, err := ver.Verify(ctx, tok)
	if err != nil || it.Subject != "alice" {
		t.Fatalf("token: %v %+v", err, it)
	}
	if idp.polls < 2 {
		t.Errorf("%d polls: pending was not waited out", idp.polls)
	}
}

func TestLoginErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		outcome  string
		noDevice bool
		client   string
		want     error
		wantText string
	}{
		{outcome: "deny", want: oidcdevice.ErrAccessDenied},
		{outcome: "expire", want: oidcdevice.ErrCodeExpired},
		{noDevice: true, want: oidcdevice.ErrNoDeviceEndpoint},
		{client: "someone", wantText: "invalid_client"},
	} {
		idp := newDeviceIdP(t)
		idp.outcome, idp.noDevice = tc.outcome, tc.noDevice
		client := "tollgate-cli"
		if tc.client != "" {
			client = tc.client
		}
		_, err := oidcdevice.Login(ctx, oidcdevice.Config{Issuer: idp.URL, ClientID: client}, nil)
		if tc.want != nil && !errors.Is(err, tc.want) || tc.wantText != "" && (err == nil || !strings.Contains(err.Error(), tc.wantText)) {
			t.Errorf("%+v: Login = %v", tc, err)
		}
	}
}

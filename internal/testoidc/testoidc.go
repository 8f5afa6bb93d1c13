// SPDX-License-Identifier: Apache-2.0

// Package testoidc is an OIDC provider on loopback for tests (go-oidc's
// oidctest), whose ID tokens the tests sign. The agent's unit tests and the
// end-to-end tests share it.
package testoidc

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
)

// keyID names the issuer's signing key in its JWKS.
const keyID = "test-key"

// Issuer is a running test provider.
type Issuer struct {
	// URL is the issuer URL (iss), an httptest server on loopback.
	URL string
	key *rsa.PrivateKey
}

// NewIssuer starts a provider with a fresh RSA key; it stops with the test.
func NewIssuer(t testing.TB) *Issuer { return NewIssuerWith(t, nil) }

// NewIssuerWith is NewIssuer with more routes: routes registers them on the
// provider's mux (is.URL is set before any request). oidctest's discovery
// and keys serve every path the routes do not take.
func NewIssuerWith(t testing.TB, routes func(mux *http.ServeMux, is *Issuer)) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{key: key}
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: keyID, Algorithm: oidc.RS256}}}
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	if routes != nil {
		routes(mux, is)
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	srv.SetIssuer(hs.URL)
	is.URL = hs.URL
	return is
}

// Token signs claims with the issuer's key. iss, aud, iat and exp default
// to a valid token for audience "tollgate"; a nil value removes a claim.
func (is *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": is.URL, "aud": "tollgate", "iat": time.Now().Add(-time.Minute).Unix(),
		"exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return oidctest.SignIDToken(is.key, keyID, oidc.RS256, string(b))
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/testoidc"
)

// testIssuer is the shared test OIDC provider.
type testIssuer = testoidc.Issuer

func newTestIssuer(t testing.TB) *testIssuer { return testoidc.NewIssuer(t) }

// unsignedToken is a JWT with "alg": "none" and no signature.
func unsignedToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// TestPostgresOIDC: a client holding only an OIDC ID token (as its
// password) reads and writes; bad tokens and unknown identities are
// refused with the right SQLSTATE and recorded; the upstream password and
// the token never reach the client or the log.
func TestPostgresOIDC(t *testing.T) {
	requireRoot(t)
	is := newTestIssuer(t)
	extra := fmt.Sprintf("oidc:\n  issuers:\n    - url: %q\n      audience: tollgate\n"+
		"identities:\n"+
		"  - name: ci-deploy\n    oidc:\n      issuer: %q\n      claims: {repository: org/app}\n"+
		"  - name: dba\n    oidc:\n      issuer: %q\n      groups: [dba]\n", is.URL, is.URL, is.URL)
	s := newPGSetup(t, "oidc", extra)
	bin := pgclientBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	other := newTestIssuer(t) // a real issuer tollgate does not trust

	good := is.Token(t, map[string]any{"sub": "repo:org/app:ref:main", "repository": "org/app"})
	u, _ := url.Parse(is.URL)
	cases := []struct {
		name, token, want string
	}{
		{"valid", good, "select: 1 " + pgScramUser + " ok"},
		{"dba-group", is.Token(t, map[string]any{"sub": "alice", "groups": []string{"staff", "dba"}}), "select: 2 " + pgScramUser + " ok"},
		{"expired", is.Token(t, map[string]any{"sub": "x", "repository": "org/app", "exp": time.Now().Add(-time.Hour).Unix()}), "FATAL 28P01"},
		{"wrong-audience", is.Token(t, map[string]any{"sub": "x", "repository": "org/app", "aud": "someone-else"}), "FATAL 28P01"},
		{"alg-none", unsignedToken(t, map[string]any{"iss": is.URL, "aud": "tollgate", "sub": "x", "repository": "org/app",
			"exp": time.Now().Add(time.Hour).Unix()}), "FATAL 28P01"},
		{"wrong-issuer", other.Token(t, map[string]any{"sub": "x", "repository": "org/app"}), "FATAL 28P01"},
		{"forged-key", other.Token(t, map[string]any{"iss": is.URL, "sub": "x", "repository": "org/app"}), "FATAL 28P01"},
		{"issuer-host-variant", is.Token(t, map[string]any{"iss": "http://localhost:" + u.Port(), "sub": "x", "repository": "org/app"}), "FATAL 28P01"},
		{"not-a-jwt", "password123", "FATAL 28P01"},
		{"unknown-identity", is.Token(t, map[string]any{"sub": "repo:org/other", "repository": "org/other"}), "FATAL 28000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.d.records())
			dsn := s.pg.dsn("ci", pgDatabase)
			out, errOut, err := runClient(t, ctx, s.cgroup, []string{"PGPASSWORD=" + tc.token}, "", bin, "connect", dsn)
			if err != nil {
				t.Fatalf("pgclient: %v\n%s", err, errOut)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("got %q, want %q", out, tc.want)
			}
			recs := s.d.records()[before:]
			var start, refused *audit.Record
			for _, r := range recs {
				switch r.Kind {
				case audit.KindSessionStart:
					start = r
				case audit.KindError:
					refused = r
				}
			}
			if strings.HasPrefix(tc.want, "FATAL") {
				code := strings.TrimPrefix(tc.want, "FATAL ")
				if start != nil {
					t.Fatalf("refused client got a session: %+v", start)
				}
				if refused == nil || refused.Detail["sqlstate"] != code || refused.Detail["phase"] != "authentication" {
					t.Fatalf("refusal not recorded with %s: %+v", code, refused)
				}
				if code == "28000" && (refused.Identity == nil || refused.Identity.Subject != "repo:org/other") {
					t.Errorf("unknown identity's subject not recorded: %+v", refused.Identity)
				}
				return
			}
			if start == nil || start.Identity == nil || start.Identity.Method != "oidc" || start.Identity.Issuer != is.URL {
				t.Fatalf("session.start identity: %+v", start)
			}
			wantName := map[string]string{"valid": "ci-deploy", "dba-group": "dba"}[tc.name]
			if start.Identity.Name != wantName {
				t.Errorf("identity %q, want %q", start.Identity.Name, wantName)
			}
		})
	}

	// Neither the upstream password nor a token is in the log or the
	// daemon's output.
	raw, err := os.ReadFile(s.d.cfg.StateDir + "/audit.db")
	if err != nil {
		t.Fatal(err)
	}
	sig := good[strings.LastIndexByte(good, '.')+1:]
	for what, secret := range map[string]string{"upstream password": pgScramPass, "token signature": sig} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("%s found in the audit log file", what)
		}
		if strings.Contains(s.d.stderr.String(), secret) {
			t.Errorf("%s found in the daemon's output", what)
		}
	}
}

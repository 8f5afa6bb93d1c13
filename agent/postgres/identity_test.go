// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

func uid(u uint32) *uint32 { return &u }

func TestResolveIdentity(t *testing.T) {
	ids := []policy.Identity{
		{Name: "report", Process: &policy.ProcessIdentity{Unit: "nightly-report.service"}},
		{Name: "ci", Process: &policy.ProcessIdentity{Cgroup: "/ci", UID: uid(1001)}},
		{Name: "deploy", OIDC: &policy.OIDCIdentity{Issuer: "https://iss", Claims: map[string]string{"repository": "org/app"}}},
		{Name: "dba", OIDC: &policy.OIDCIdentity{Issuer: "https://iss", Groups: []string{"dba"}},
			Process: &policy.ProcessIdentity{Exe: "/usr/bin/psql"}},
	}
	proc := func(cg string, u uint32, exe string) *audit.Process {
		return &audit.Process{Cgroup: cg, UID: u, Exe: exe}
	}
	cases := []struct {
		name   string
		p      *audit.Process
		claims *Claims
		want   string
	}{
		{"unit", proc("/system.slice/nightly-report.service", 0, ""), nil, "report"},
		{"unit subtree", proc("/system.slice/nightly-report.service/sub", 0, ""), nil, "report"},
		{"unit prefix is not the unit", proc("/system.slice/nightly-report.service-x", 0, ""), nil, ""},
		{"cgroup and uid", proc("/ci/job-1", 1001, ""), nil, "ci"},
		{"cgroup sibling", proc("/ci-other", 1001, ""), nil, ""},
		{"cgroup wrong uid", proc("/ci", 0, ""), nil, ""},
		{"claims", proc("/x", 0, ""), &Claims{Issuer: "https://iss", Strings: map[string]string{"repository": "org/app"}}, "deploy"},
		{"claims mismatch", proc("/x", 0, ""), &Claims{Issuer: "https://iss", Strings: map[string]string{"repository": "org/other"}}, ""},
		{"other issuer", proc("/x", 0, ""), &Claims{Issuer: "https://other", Strings: map[string]string{"repository": "org/app"}}, ""},
		{"group and exe", proc("/x", 0, "/usr/bin/psql"), &Claims{Issuer: "https://iss", Groups: []string{"staff", "dba"}}, "dba"},
		{"group wrong exe", proc("/x", 0, "/usr/bin/python3"), &Claims{Issuer: "https://iss", Groups: []string{"dba"}}, ""},
		{"token never matches a process-only identity", proc("/ci", 1001, ""), &Claims{Issuer: "https://iss"}, ""},
	}
	for _, tc := range cases {
		got := ""
		if id := resolveIdentity(ids, tc.p, tc.claims); id != nil {
			got = id.Name
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("s3cret\r\nignored\n"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("x\n"), 0o640)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)

	if os.Geteuid() == 0 {
		pw, err := ReadPasswordFile(good)
		if err != nil || pw != "s3cret" {
			t.Fatalf("good file: %q %v", pw, err)
		}
		other := filepath.Join(dir, "other")
		os.WriteFile(other, []byte("x\n"), 0o600)
		os.Chown(other, 65534, 65534)
		if _, err := ReadPasswordFile(other); !errors.Is(err, ErrSecretFile) || !strings.Contains(err.Error(), "root") {
			t.Errorf("file not owned by root: %v", err)
		}
	}
	for name, p := range map[string]string{"mode 0640": loose, "symlink": link, "directory": dir, "missing": filepath.Join(dir, "nope"), "empty": empty} {
		if _, err := ReadPasswordFile(p); !errors.Is(err, ErrSecretFile) {
			t.Errorf("%s: %v", name, err)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error quotes the password: %v", name, err)
		}
	}
}

func TestOIDCVerifier(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k", Algorithm: oidc.RS256}}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	srv.SetIssuer(hs.URL)
	v := NewOIDCVerifier([]policy.Issuer{{URL: hs.URL, Audience: "tollgate", GroupsClaim: "roles"}}, hs.Client())
	sign := func(claims map[string]any) string {
		c := map[string]any{"iss": hs.URL, "aud": "tollgate", "sub": "s", "exp": time.Now().Add(time.Hour).Unix()}
		for k, val := range claims {
			c[k] = val
		}
		b, _ := json.Marshal(c)
		return oidctest.SignIDToken(key, "k", oidc.RS256, string(b))
	}
	c, err := v.Verify(context.Background(), sign(map[string]any{"roles": []string{"dba"}, "repository": "org/app"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "s" || c.Issuer != hs.URL || len(c.Groups) != 1 || c.Groups[0] != "dba" || c.Strings["repository"] != "org/app" {
		t.Fatalf("claims %+v", c)
	}
	for name, tok := range map[string]string{
		"expired":  sign(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}),
		"audience": sign(map[string]any{"aud": "other"}),
		"issuer":   sign(map[string]any{"iss": "https://elsewhere"}),
		"garbage":  "a.b.c",
		"not jwt":  "hunter2",
	} {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error contains the token", name)
		}
	}
}

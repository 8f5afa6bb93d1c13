// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestGrantsPersistExpireRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grants.json")
	g, err := policy.OpenGrants(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	by := policy.Person{Issuer: "https://iss", Subject: "alice"}
	if _, err := g.Create("ci-deploy", "orders-db", []policy.Class{policy.ClassDDL}, 0, "x", by, now); !errors.Is(err, policy.ErrBadGrant) {
		t.Fatalf("zero duration: %v", err)
	}
	if _, err := g.Create("ci-deploy", "orders-db", []policy.Class{"bogus"}, time.Hour, "x", by, now); !errors.Is(err, policy.ErrBadGrant) {
		t.Fatalf("bad class: %v", err)
	}
	gr, err := g.Create("ci-deploy", "orders-db", []policy.Class{policy.ClassDDL}, 30*time.Minute, "hotfix", by, now)
	if err != nil {
		t.Fatal(err)
	}
	// Persisted: a reopened store has it.
	g2, err := policy.OpenGrants(path)
	if err != nil {
		t.Fatal(err)
	}
	if a := g2.Active([]string{"ci-deploy"}, "orders-db", now.Add(time.Minute)); len(a) != 1 || a[0].ID != gr.ID {
		t.Fatalf("active after reopen: %+v", a)
	}
	if a := g2.Active([]string{"ci-deploy"}, "orders-db", now.Add(31*time.Minute)); len(a) != 0 {
		t.Fatalf("expired grant active: %+v", a)
	}
	if a := g2.Active([]string{"other"}, "orders-db", now.Add(time.Minute)); len(a) != 0 {
		t.Fatalf("grant for another identity: %+v", a)
	}
	if _, err := g2.Revoke(gr.ID, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if a := g2.Active([]string{"ci-deploy"}, "orders-db", now.Add(3*time.Minute)); len(a) != 0 {
		t.Fatalf("revoked grant active: %+v", a)
	}
	if _, err := g2.Revoke(gr.ID, now); !errors.Is(err, policy.ErrNoSuchGrant) {
		t.Fatalf("double revoke: %v", err)
	}
	if l := g2.List(); len(l) != 1 || l[0].Revoked.IsZero() {
		t.Fatalf("history: %+v", l)
	}
}

// TestDecideWithGrants: a grant pre-approves what review would hold, but a
// deny rule still wins.
func TestDecideWithGrants(t *testing.T) {
	e := designEngine(t)
	gr := policy.Grant{ID: "g1", Identity: "ci-deploy", Target: "orders-db", Classes: []policy.Class{policy.ClassDDL, policy.ClassTruncate}}
	req := policy.Request{Identities: []string{"ci-deploy"}, Target: "orders-db", Classes: []policy.Class{policy.ClassDDL}, Grants: []policy.Grant{gr}}
	if d := e.Decide(req); d.Action != policy.ActionAllow || d.Rule != "grant:g1" {
		t.Fatalf("granted ddl: %+v", d)
	}
	req.Classes = []policy.Class{policy.ClassTruncate}
	if d := e.Decide(req); d.Action != policy.ActionDeny || d.Rule != "no-bulk-delete" {
		t.Fatalf("granted truncate must still be denied: %+v", d)
	}
	req.Classes = []policy.Class{policy.ClassInsert}
	if d := e.Decide(req); d.Action != policy.ActionDeny {
		t.Fatalf("ungranted class: %+v", d)
	}
}

// TestMayGrant: who may grant what, from the rules alone.
func TestMayGrant(t *testing.T) {
	cfg, err := policy.Parse([]byte(`host_id: h1
targets:
  - name: db
    protocol: postgres
    match: ["127.0.0.2:5432"]
    upstream: {user: app, password_file: /etc/tollgate/db.pw, sslmode: disable}
  - name: other
    protocol: postgres
    match: ["127.0.0.3:5432"]
    upstream: {user: app, password_file: /etc/tollgate/db.pw, sslmode: disable}
oidc:
  issuers: [{url: "https://iss", audience: tollgate}]
identities:
  - name: deploy
    oidc: {issuer: "https://iss", subject: ci}
  - name: dba
    oidc: {issuer: "https://iss", groups: [dba]}
rules:
  - id: ddl-review
    when: {identities: [deploy], targets: [db], classes: [ddl, copy]}
    action: review
    approvers: {identities: [dba], timeout: 10m}
  - id: truncate-four-eyes
    when: {identities: [deploy], classes: [truncate]}
    action: review
    approvers: {groups: [dba], min: 2, timeout: 10m}
`))
	if err != nil {
		t.Fatal(err)
	}
	alice := policy.Person{Issuer: "https://iss", Subject: "alice", Groups: []string{"dba"}, Identities: []string{"dba"}}
	mallory := policy.Person{Issuer: "https://iss", Subject: "mallory", Groups: []string{"staff"}}
	ci := policy.Person{Issuer: "https://iss", Subject: "ci", Groups: []string{"dba"}, Identities: []string{"deploy", "dba"}}
	cases := []struct {
		name     string
		p        policy.Person
		identity string
		target   string
		classes  []policy.Class
		revoking bool
		want     error
	}{
		{"approver", alice, "deploy", "db", []policy.Class{policy.ClassDDL}, false, nil},
		{"copy covers copy-in", alice, "deploy", "db", []policy.Class{policy.ClassCopyIn, policy.ClassCopyOut}, false, nil},
		{"not an approver", mallory, "deploy", "db", []policy.Class{policy.ClassDDL}, false, policy.ErrNotGrantor},
		{"uncovered class", alice, "deploy", "db", []policy.Class{policy.ClassDDL, policy.ClassSelect}, false, policy.ErrNotGrantor},
		{"other target", alice, "deploy", "other", []policy.Class{policy.ClassDDL}, false, policy.ErrNotGrantor},
		{"four-eyes rule", alice, "deploy", "db", []policy.Class{policy.ClassTruncate}, false, policy.ErrNotGrantor},
		{"self-grant", ci, "deploy", "db", []policy.Class{policy.ClassDDL}, false, policy.ErrSelfGrant},
		{"self may revoke", ci, "deploy", "db", []policy.Class{policy.ClassDDL}, true, nil},
		{"unknown target", alice, "deploy", "nope", []policy.Class{policy.ClassDDL}, false, policy.ErrBadGrant},
		{"unknown identity", alice, "nobody", "db", []policy.Class{policy.ClassDDL}, false, policy.ErrBadGrant},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := cfg.MayGrant(tc.p, tc.identity, tc.target, tc.classes, tc.revoking)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("MayGrant = %v, want %v", err, tc.want)
			}
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// TestAPIGrants: an approver of a single-approver review rule grants what
// it covers; others, self-grants, uncovered classes and four-eyes rules are
// refused; grants are listed, revoked by their creator and recorded with
// the keys the access report reads.
func TestAPIGrants(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	alice := ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})
	bob := ta.is.Token(t, map[string]any{"sub": "bob", "groups": []string{"dba"}})
	mallory := ta.is.Token(t, map[string]any{"sub": "mallory", "groups": []string{"staff"}})
	ddl := GrantRequest{Identity: "deploy", Target: "db", Classes: []policy.Class{policy.ClassDDL},
		For: policy.Duration(30 * time.Minute), Reason: "migration 42"}

	refused := []struct {
		name  string
		req   GrantRequest
		token string
		want  error
	}{
		{"not-an-approver", ddl, mallory, ErrNotGrantor},
		{"bad-token", ddl, "x.y.z", ErrBadToken},
		{"self-grant", ddl, ta.is.Token(t, map[string]any{"sub": "ci", "groups": []string{"dba"}}), ErrSelfGrant},
		{"uncovered-class", GrantRequest{Identity: "deploy", Target: "db", Classes: []policy.Class{policy.ClassDDL, policy.ClassSelect},
			For: ddl.For, Reason: "x"}, alice, ErrNotGrantor},
		{"four-eyes-rule", GrantRequest{Identity: "deploy", Target: "db", Classes: []policy.Class{policy.ClassTruncate},
			For: ddl.For, Reason: "x"}, alice, ErrNotGrantor},
		{"unknown-target", GrantRequest{Identity: "deploy", Target: "nope", Classes: ddl.Classes, For: ddl.For, Reason: "x"}, alice, policy.ErrBadGrant},
		{"no-reason", GrantRequest{Identity: "deploy", Target: "db", Classes: ddl.Classes, For: ddl.For}, alice, policy.ErrBadGrant},
		{"too-long", GrantRequest{Identity: "deploy", Target: "db", Classes: ddl.Classes, For: policy.Duration(8 * 24 * time.Hour), Reason: "x"}, alice, policy.ErrBadGrant},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := ta.a.alog.Size()
			if _, err := ta.client.CreateGrant(ctx, tc.req, tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("CreateGrant = %v, want %v", err, tc.want)
			}
			recs := ta.records(t)[before:]
			if len(recs) != 1 || recs[0].Kind != audit.KindError || recs[0].Detail["call"] != "grant.create" ||
				recs[0].Process == nil || recs[0].Process.Pid != uint32(os.Getpid()) {
				t.Fatalf("refusal records %+v", recs)
			}
		})
	}
	if gs, _ := ta.client.Grants(ctx); len(gs) != 0 {
		t.Fatalf("refused calls left grants: %+v", gs)
	}

	g, err := ta.client.CreateGrant(ctx, ddl, alice)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != "active" || g.Identity != "deploy" || g.By.Subject != "alice" || g.Until.Sub(g.Created) != 30*time.Minute {
		t.Fatalf("grant %+v", g)
	}
	rec := lastOf(ta.records(t), audit.KindGrant)
	want := map[string]string{"grant": g.ID, "event": "created", "identity": "deploy", "target": "db", "allow": "ddl",
		"for": "30m", "reason": "migration 42", "granted_by": "dba (alice)"}
	for k, v := range want {
		if rec.Detail[k] != v {
			t.Errorf("grant record %s = %q, want %q", k, rec.Detail[k], v)
		}
	}
	if rec.Identity == nil || rec.Identity.Subject != "alice" || rec.Identity.Name != "dba" || rec.Process.Pid != uint32(os.Getpid()) {
		t.Errorf("grant record identity %+v process %+v", rec.Identity, rec.Process)
	}
	// The grant is in force for the data path.
	if act := ta.a.grants.Active([]string{"deploy"}, "db", time.Now()); len(act) != 1 || act[0].ID != g.ID {
		t.Fatalf("Active = %+v", act)
	}

	if _, err := ta.client.RevokeGrant(ctx, g.ID, "", mallory); !errors.Is(err, ErrNotGrantor) {
		t.Fatalf("revoke by a non-approver: %v", err)
	}
	if _, err := ta.client.RevokeGrant(ctx, "gr-0000", "", alice); !errors.Is(err, policy.ErrNoSuchGrant) {
		t.Fatalf("revoke unknown: %v", err)
	}
	// Another approver who could have granted it may revoke it.
	r, err := ta.client.RevokeGrant(ctx, g.ID, "done early", bob)
	if err != nil || r.State != "revoked" {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	rec = lastOf(ta.records(t), audit.KindGrant)
	if rec.Detail["event"] != "revoked" || rec.Detail["grant"] != g.ID || rec.Detail["revoke_reason"] != "done early" || rec.Identity.Subject != "bob" {
		t.Fatalf("revoke record %+v", rec)
	}
	if _, err := ta.client.RevokeGrant(ctx, g.ID, "", alice); !errors.Is(err, ErrGrantEnded) {
		t.Fatalf("second revoke: %v", err)
	}
	if act := ta.a.grants.Active([]string{"deploy"}, "db", time.Now()); len(act) != 0 {
		t.Fatalf("revoked grant still active: %+v", act)
	}
	gs, err := ta.client.Grants(ctx)
	if err != nil || len(gs) != 1 || gs[0].State != "revoked" {
		t.Fatalf("Grants = %+v, %v", gs, err)
	}
}

// expiredRecords counts the expiry records of grant id.
func expiredRecords(t *testing.T, ta *testAgent, id string) int {
	n := 0
	for _, r := range ta.records(t) {
		if r.Kind == audit.KindGrant && r.Detail["event"] == "expired" && r.Detail["grant"] == id {
			n++
		}
	}
	return n
}

// TestGrantExpiryOnce: a grant's expiry is recorded exactly once: by the
// running daemon, not again after a restart, and after a crash between
// the record and its mark, found in the log instead of written twice; a
// grant that expired while the daemon was down is recorded at start.
func TestGrantExpiryOnce(t *testing.T) {
	is := newTestIssuer(t)
	dir := t.TempDir()
	by := policy.Person{Name: "dba", Issuer: is.URL, Subject: "alice"}
	marksPath := filepath.Join(dir, GrantsExpiredFile)

	// "Run" 1: two grants already past their window, one in force.
	ta := startTestAgent(t, is, dir)
	past := time.Now().Add(-time.Hour)
	create := func(ta *testAgent, reason string, d time.Duration, from time.Time) policy.Grant {
		g, err := ta.a.grants.Create("deploy", "db", []policy.Class{policy.ClassDDL}, d, reason, by, from)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g1 := create(ta, "old", time.Minute, past)
	g2 := create(ta, "crash", 2*time.Minute, past)
	current := create(ta, "current", time.Hour, time.Now())
	marks, err := openExpiryMarks(marksPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.a.reconcileExpiries(context.Background(), marks); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ta.a.recordExpiries(marks, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []policy.Grant{g1, g2} {
		if n := expiredRecords(t, ta, g.ID); n != 1 {
			t.Fatalf("grant %q: %d expiry records, want 1", g.Reason, n)
		}
	}
	if n := expiredRecords(t, ta, current.ID); n != 0 {
		t.Fatalf("grant in force recorded as expired")
	}
	var rec *audit.Record
	for _, r := range ta.records(t) {
		if r.Kind == audit.KindGrant && r.Detail["grant"] == g1.ID {
			rec = r
		}
	}
	if rec.Time.Before(g1.Until) || rec.Detail["until"] != g1.Until.Format(time.RFC3339Nano) || rec.Identity.Subject != "alice" || rec.Detail["allow"] != "ddl" || rec.Detail["for"] != "1m" {
		t.Errorf("expiry record %+v", rec)
	}
	// The grant in force expires once its time has come, once.
	for range 2 {
		if err := ta.a.recordExpiries(marks, current.Until); err != nil {
			t.Fatal(err)
		}
	}
	if n := expiredRecords(t, ta, current.ID); n != 1 {
		t.Fatalf("%d expiry records for the grant whose window passed, want 1", n)
	}
	// A crash after recording g2 but before marking it: drop its mark.
	marks.mu.Lock()
	delete(marks.done, g2.ID)
	marks.mu.Unlock()
	if err := marks.mark(nil, time.Now(), func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	// And g3 expires while the daemon is down.
	g3 := create(ta, "while down", time.Minute, past)
	ta.stop()

	// "Run" 2 on the same state directory.
	ta2 := startTestAgent(t, is, dir)
	marks2, err := openExpiryMarks(marksPath)
	if err != nil {
		t.Fatal(err)
	}
	if marks2.has(g2.ID) || !marks2.has(g1.ID) || marks2.has(g3.ID) {
		t.Fatalf("marks after the crash: %v", marks2.done)
	}
	if err := ta2.a.reconcileExpiries(context.Background(), marks2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ta2.a.recordExpiries(marks2, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []policy.Grant{g1, g2, g3} {
		if n := expiredRecords(t, ta2, g.ID); n != 1 {
			t.Errorf("grant %q: %d expiry records after restart, want 1", g.Reason, n)
		}
	}
	if !marks2.has(g2.ID) || !marks2.has(g3.ID) {
		t.Errorf("marks after restart: %v", marks2.done)
	}
}

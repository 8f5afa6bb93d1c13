// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// testRules: reads and writes allowed, DDL reviewed by group dba,
// DELETE without WHERE and DROP-like statements on secrets denied.
func testRules() []policy.Rule {
	return []policy.Rule{
		{ID: "reads", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect, policy.ClassInsert,
			policy.ClassUpdate, policy.ClassDelete, policy.ClassTransaction, policy.ClassMultiStatement}}},
		{ID: "no-bulk-delete", Action: policy.ActionDeny, Reason: "bulk deletes go through a migration",
			When: policy.Conditions{Classes: []policy.Class{policy.ClassDeleteWithoutWhere}}},
		{ID: "ddl-review", Action: policy.ActionReview, When: policy.Conditions{Classes: []policy.Class{policy.ClassDDL}},
			Approvers: policy.Approvers{Groups: []string{"dba"}, Timeout: policy.Duration(time.Hour)}},
	}
}

// lastStatement returns the newest statement record.
func lastStatement(t *testing.T, rec *fakeRecorder) *audit.Record {
	t.Helper()
	st := rec.kinds(audit.KindStatement)
	if len(st) == 0 {
		t.Fatal("no statement record")
	}
	return st[len(st)-1]
}

// expectRaise checks that the server received, in place of a refused
// statement, the DO block raising code with a message naming the record.
func expectRaise(t *testing.T, text, code string, rec *audit.Record) {
	t.Helper()
	if !strings.HasPrefix(text, "DO $tollgate$ BEGIN RAISE EXCEPTION USING ERRCODE = '"+code+"'") {
		t.Fatalf("server got %q, want a raise of %s", text, code)
	}
	if want := fmt.Sprintf("(audit record %d)", rec.Seq); !strings.Contains(text, want) {
		t.Fatalf("raise %q does not name %s", text, want)
	}
}

// serverRaises answers a raise as PostgreSQL does, PL/pgSQL context
// included, with ReadyForQuery status tx.
func serverRaise(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg,
		Where: "PL/pgSQL function inline_code_block line 1 at RAISE", File: "pl_exec.c", Line: 3911, Routine: "exec_stmt_raise"}
}

// TestDenySimpleQuery: a denied query never reaches the server; the
// server raises 42501 in its place, and the client sees the error (without
// the PL/pgSQL context) and the server's own transaction status.
func TestDenySimpleQuery(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...)}, nil)
	h.send(t, &pgproto3.Query{String: "DELETE FROM orders"})
	q, ok := h.receiveServer(t).(*pgproto3.Query)
	if !ok {
		t.Fatal("server did not get a query")
	}
	st := lastStatement(t, rec)
	if d := st.Decision; d.Action != "deny" || d.Rule != "no-bulk-delete" || d.Policy != "sha256:test" || d.Reason != "bulk deletes go through a migration" {
		t.Fatalf("decision %+v", d)
	}
	expectRaise(t, q.String, "42501", st)
	if !strings.Contains(q.String, `rule "no-bulk-delete"`) {
		t.Fatalf("raise does not name the rule: %q", q.String)
	}
	h.serve(t, serverRaise("42501", "tollgate: statement denied"), &pgproto3.ReadyForQuery{TxStatus: 'E'})
	got := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(got) != 2 {
		t.Fatalf("client got %#v", got)
	}
	if e := got[0].(*pgproto3.ErrorResponse); e.Code != "42501" || e.Severity != "ERROR" || e.Where != "" || e.Message != "tollgate: statement denied" {
		t.Fatalf("error %+v", e)
	}
	if z := got[1].(*pgproto3.ReadyForQuery); z.TxStatus != 'E' {
		t.Fatalf("status %c", z.TxStatus)
	}
	h.cconn.Close()
	<-h.done
	res := rec.kinds(audit.KindResult)
	if len(res) != 1 || res[0].Detail["sqlstate"] != "42501" || res[0].Detail["statement_seq"] != fmt.Sprint(st.Seq) {
		t.Fatalf("results %+v", res)
	}
}

// TestDenyMultiStatement: one denied statement denies the whole string,
// even when the others are allowed.
func TestDenyMultiStatement(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...)}, nil)
	h.send(t, &pgproto3.Query{String: "SELECT 1; DELETE FROM t; SELECT 2"})
	q := h.receiveServer(t).(*pgproto3.Query)
	st := lastStatement(t, rec)
	if st.Decision.Action != "deny" || st.Decision.Rule != "no-bulk-delete" {
		t.Fatalf("decision %+v", st.Decision)
	}
	expectRaise(t, q.String, "42501", st)
}

// TestDenyParsePipeline: a denied Parse in a pipeline is replaced by
// Parse/Bind/Execute of a raise; the client sees the error where it
// expected ParseComplete, nothing for the rest of the pipeline, then
// ReadyForQuery, exactly as when the server refuses a Parse. A denied
// Execute behind it is recorded, not sent.
func TestDenyParsePipeline(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...)}, nil)
	h.send(t,
		&pgproto3.Parse{Name: "s1", Query: "DELETE FROM orders"},
		&pgproto3.Bind{PreparedStatement: "s1"},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	p, ok := h.receiveServer(t).(*pgproto3.Parse)
	if !ok || p.Name != "" {
		t.Fatalf("server got %#v", p)
	}
	parseRec := rec.kinds(audit.KindStatement)[0]
	if parseRec.Detail["protocol"] != "parse" || parseRec.Decision.Action != "deny" {
		t.Fatalf("parse record %+v %+v", parseRec.Detail, parseRec.Decision)
	}
	expectRaise(t, p.Query, "42501", parseRec)
	for _, want := range []string{"*pgproto3.Bind", "*pgproto3.Execute", "*pgproto3.Bind", "*pgproto3.Describe", "*pgproto3.Sync"} {
		if got := fmt.Sprintf("%T", h.receiveServer(t)); got != want {
			t.Fatalf("server got %s, want %s", got, want)
		}
	}
	// The client's Execute of the refused statement was recorded (as
	// unknown: the statement does not exist) but not sent.
	ex := lastStatement(t, rec)
	if ex.Detail["protocol"] != "extended" || ex.Detail["discarded"] != "true" {
		t.Fatalf("execute record %+v", ex.Detail)
	}
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, serverRaise("42501", "denied"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	got := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(got) != 2 {
		t.Fatalf("client got %#v", got)
	}
	if e, ok := got[0].(*pgproto3.ErrorResponse); !ok || e.Code != "42501" || e.Where != "" {
		t.Fatalf("client got %#v", got[0])
	}
	// The session goes on: the next pipeline is relayed as usual.
	h.send(t, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for range 4 {
		h.receiveServer(t)
	}
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if got := receiveClient[*pgproto3.ReadyForQuery](t, h); len(got) != 5 {
		t.Fatalf("client got %#v", got)
	}
	h.cconn.Close()
	<-h.done
	res := rec.kinds(audit.KindResult)
	slices.SortFunc(res, func(a, b *audit.Record) int { return strings.Compare(a.Detail["n"], b.Detail["n"]) })
	if len(res) != 2 || res[0].Detail["skipped"] != "true" || res[1].Detail["tag"] != "SELECT 1" {
		for _, r := range res {
			t.Log(r.Detail)
		}
		t.Fatal("results")
	}
}

// TestDenyInAbortedTransaction: when the transaction is already aborted,
// the server answers the injected statement with 25P02, as it would the
// refused one, and the client sees just that.
func TestDenyInAbortedTransaction(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...)}, nil)
	aborted := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "25P02", Message: "current transaction is aborted"}
	h.send(t, &pgproto3.Parse{Query: "DELETE FROM t"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for _, want := range []string{"*pgproto3.Parse", "*pgproto3.Bind", "*pgproto3.Execute", "*pgproto3.Bind", "*pgproto3.Sync"} {
		if got := fmt.Sprintf("%T", h.receiveServer(t)); got != want {
			t.Fatalf("server got %s, want %s", got, want)
		}
	}
	h.serve(t, aborted, &pgproto3.ReadyForQuery{TxStatus: 'E'})
	got := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(got) != 2 || got[0].(*pgproto3.ErrorResponse).Code != "25P02" {
		t.Fatalf("client got %#v", got)
	}
	h.send(t, &pgproto3.Query{String: "DELETE FROM t"})
	if q := h.receiveServer(t).(*pgproto3.Query); !strings.HasPrefix(q.String, "DO ") {
		t.Fatalf("server got %q", q.String)
	}
	h.serve(t, aborted, &pgproto3.ReadyForQuery{TxStatus: 'E'})
	got = receiveClient[*pgproto3.ReadyForQuery](t, h)
	if e := got[0].(*pgproto3.ErrorResponse); e.Code != "25P02" {
		t.Fatalf("client got %+v", e)
	}
	h.cconn.Close()
	<-h.done
	res := rec.kinds(audit.KindResult)
	slices.SortFunc(res, func(a, b *audit.Record) int { return strings.Compare(a.Detail["n"], b.Detail["n"]) })
	if len(res) != 2 || res[0].Detail["skipped"] != "true" || res[1].Detail["sqlstate"] != "25P02" {
		for _, r := range res {
			t.Log(r.Detail)
		}
		t.Fatal("results")
	}
}

// switchPolicy is a PolicySource whose policy a test replaces.
type switchPolicy struct{ cur atomic.Pointer[staticPolicy] }

func (p *switchPolicy) Current() (*policy.Engine, string) { c := p.cur.Load(); return c.eng, c.hash }

// TestVerdictAtParseHonouredAtExecute: the verdict made at Parse applies
// to each Execute of the statement, until the policy changes: then the
// Execute is judged again, and refused.
func TestVerdictAtParseHonouredAtExecute(t *testing.T) {
	rec := &fakeRecorder{}
	sp := &switchPolicy{}
	allow := rulesPolicy(testRules()...)
	sp.cur.Store(&allow)
	h := newPolicyHarness(t, rec, Options{Policy: sp}, nil)
	h.send(t, &pgproto3.Parse{Name: "q", Query: "SELECT * FROM t"}, &pgproto3.Bind{PreparedStatement: "q"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for range 4 {
		h.receiveServer(t)
	}
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	if st := lastStatement(t, rec); st.Decision.Action != "allow" || st.Decision.Rule != "reads" {
		t.Fatalf("decision %+v", st.Decision)
	}
	strict := rulesPolicy(policy.Rule{ID: "nothing-but-ddl", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassDDL}}})
	strict.hash = "sha256:strict"
	sp.cur.Store(&strict)
	h.send(t, &pgproto3.Bind{PreparedStatement: "q"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, ok := h.receiveServer(t).(*pgproto3.Bind); !ok {
		t.Fatal("bind not forwarded")
	}
	p, ok := h.receiveServer(t).(*pgproto3.Parse)
	if !ok {
		t.Fatal("execute not replaced")
	}
	st := lastStatement(t, rec)
	if st.Decision.Action != "deny" || st.Decision.Policy != "sha256:strict" || st.Detail["statement"] != "q" {
		t.Fatalf("record %+v %+v", st.Decision, st.Detail)
	}
	expectRaise(t, p.Query, "42501", st)
	for range 3 { // Bind, Execute, Sync
		h.receiveServer(t)
	}
	h.serve(t, &pgproto3.BindComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, serverRaise("42501", "x"),
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	got := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(got) != 3 || fmt.Sprintf("%T", got[0]) != "*pgproto3.BindComplete" || fmt.Sprintf("%T", got[1]) != "*pgproto3.ErrorResponse" {
		t.Fatalf("client got %#v", got)
	}
}

// TestDenyFunctionCall: a fast-path function call is judged as
// function_call; denied, the server raises in its place.
func TestDenyFunctionCall(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...)}, nil)
	h.send(t, &pgproto3.FunctionCall{Function: 764, ResultFormatCode: 0})
	q, ok := h.receiveServer(t).(*pgproto3.Query)
	if !ok {
		t.Fatal("function call not replaced by a query")
	}
	st := lastStatement(t, rec)
	if st.Decision.Action != "deny" || st.Decision.Rule != "" || st.Statement.Classes[0] != "function_call" {
		t.Fatalf("record %+v", st)
	}
	expectRaise(t, q.String, "42501", st)
	if !strings.Contains(q.String, "default deny") {
		t.Fatalf("raise %q", q.String)
	}
}

// TestRaiseSQLQuoting: messages with quotes and dollar tags stay inside
// the literal.
func TestRaiseSQLQuoting(t *testing.T) {
	got := raiseSQL("42501", `it's $tollgate$ and\x00 $tollgate0$ \`)
	want := `DO $tollgate1$ BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = E'it''s $tollgate$ and\\x00 $tollgate0$ \\'; END $tollgate1$`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// waitHold returns the statement on hold once there is one.
func waitHold(t *testing.T, a *policy.Approvals) policy.Hold {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l := a.List(); len(l) > 0 {
			return l[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no statement on hold")
	return policy.Hold{}
}

var dba = policy.Person{Name: "alice", Issuer: "https://issuer", Subject: "alice", Groups: []string{"dba"}}

// TestReviewApproved: a held statement waits (its notice names the
// approval), and runs once approved, after the approval's records.
func TestReviewApproved(t *testing.T) {
	rec := &fakeRecorder{}
	ap := policy.NewApprovals(10)
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...), Approvals: ap}, []string{"deployer"})
	h.send(t, &pgproto3.Query{String: "ALTER TABLE t ADD COLUMN c int"})
	got := receiveClient[*pgproto3.NoticeResponse](t, h)
	held := waitHold(t, ap)
	n := got[0].(*pgproto3.NoticeResponse)
	if !strings.Contains(n.Message, held.ID) || !strings.Contains(n.Message, "tollgate approve "+held.ID) {
		t.Fatalf("notice %q", n.Message)
	}
	if held.Rule != "ddl-review" || held.Statement != "ALTER TABLE t ADD COLUMN c int" || held.Requester.Identities[0] != "deployer" {
		t.Fatalf("hold %+v", held)
	}
	req := rec.kinds(audit.KindApprovalRequest)
	if len(req) != 1 || req[0].Detail["approval"] != held.ID || req[0].Statement.Text != held.Statement || req[0].Decision.Rule != "ddl-review" {
		t.Fatalf("approval.request %+v", req)
	}
	if _, err := ap.Decide(held.ID, dba, true, "ticket 7"); err != nil {
		t.Fatal(err)
	}
	q := h.receiveServer(t).(*pgproto3.Query)
	if q.String != "ALTER TABLE t ADD COLUMN c int" {
		t.Fatalf("server got %q", q.String)
	}
	dec := rec.kinds(audit.KindApprovalDecision)
	if len(dec) != 1 || dec[0].Decision.Action != "allow" || dec[0].Identity.Name != "alice" || dec[0].Detail["approval"] != held.ID || dec[0].Decision.Reason != "ticket 7" {
		t.Fatalf("approval.decision %+v", dec)
	}
	st := lastStatement(t, rec)
	if st.Decision.Action != "allow" || st.Decision.Rule != "ddl-review" || st.Detail["approval"] != held.ID || st.Seq < dec[0].Seq {
		t.Fatalf("statement %+v %+v", st.Decision, st.Detail)
	}
}

// TestReviewDeniedTimedOutCancelled: denied → 42501, timeout and a cancel
// request → 57014, each raised by the server in place of the statement;
// the client's disconnect ends the hold.
func TestReviewDeniedTimedOutCancelled(t *testing.T) {
	for _, tc := range []struct {
		name, code, detail string
		end                func(t *testing.T, h *relayHarness, a *policy.Approvals, id string)
	}{
		{"denied", "42501", "", func(t *testing.T, h *relayHarness, a *policy.Approvals, id string) {
			if _, err := a.Decide(id, dba, false, "not during business hours"); err != nil {
				t.Fatal(err)
			}
		}},
		{"timeout", "57014", "timed_out", nil},
		{"cancel", "57014", "cancelled", func(t *testing.T, h *relayHarness, a *policy.Approvals, id string) {
			if !h.slot.cancelHold() {
				t.Fatal("no hold to cancel")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeRecorder{}
			ap := policy.NewApprovals(10)
			rules := testRules()
			if tc.end == nil {
				rules[2].Approvers.Timeout = policy.Duration(50 * time.Millisecond)
			}
			h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(rules...), Approvals: ap}, []string{"deployer"})
			h.send(t, &pgproto3.Query{String: "DROP TABLE t"})
			receiveClient[*pgproto3.NoticeResponse](t, h)
			id := rec.kinds(audit.KindApprovalRequest)[0].Detail["approval"]
			if tc.end != nil {
				// Decidable once listed (recorded and the client told).
				if held := waitHold(t, ap); held.ID != id {
					t.Fatalf("hold %s, request %s", held.ID, id)
				}
				tc.end(t, h, ap, id)
			}
			q := h.receiveServer(t).(*pgproto3.Query)
			st := lastStatement(t, rec)
			expectRaise(t, q.String, tc.code, st)
			if st.Decision.Action != "deny" || st.Detail["approval"] != id || !strings.Contains(q.String, id) {
				t.Fatalf("statement %+v %+v", st.Decision, st.Detail)
			}
			dec := rec.kinds(audit.KindApprovalDecision)
			if len(dec) != 1 || dec[0].Decision.Action != "deny" || (tc.detail != "" && dec[0].Detail[tc.detail] == "") {
				t.Fatalf("approval.decision %+v", dec[0])
			}
			h.serve(t, serverRaise(tc.code, "x"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
			got := receiveClient[*pgproto3.ReadyForQuery](t, h)
			if e := got[0].(*pgproto3.ErrorResponse); e.Code != tc.code {
				t.Fatalf("client got %+v", e)
			}
		})
	}
	t.Run("client gone", func(t *testing.T) {
		rec := &fakeRecorder{}
		ap := policy.NewApprovals(10)
		h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...), Approvals: ap}, nil)
		h.send(t, &pgproto3.Query{String: "DROP TABLE t"})
		receiveClient[*pgproto3.NoticeResponse](t, h)
		h.cconn.Close()
		st := <-h.done
		if st.Reason != ReasonClientClosed {
			t.Fatalf("reason %q", st.Reason)
		}
		if len(ap.List()) != 0 {
			t.Fatal("hold outlived the client")
		}
		dec := rec.kinds(audit.KindApprovalDecision)
		if len(dec) != 1 || dec[0].Detail["cancelled"] != "client closed" {
			t.Fatalf("approval.decision %+v", dec)
		}
	})
	t.Run("terminate behind", func(t *testing.T) {
		rec := &fakeRecorder{}
		ap := policy.NewApprovals(10)
		h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...), Approvals: ap}, nil)
		h.send(t, &pgproto3.Query{String: "DROP TABLE t"}, &pgproto3.Terminate{})
		go io.Copy(io.Discard, h.cconn)
		<-h.done
		if dec := rec.kinds(audit.KindApprovalDecision); len(dec) != 1 || dec[0].Detail["cancelled"] != "client closed" {
			t.Fatalf("approval.decision %+v", dec)
		}
	})
}

// TestReviewHoldsLaterMessages: what the client sends behind a held
// statement waits, and follows it in order once it is approved.
func TestReviewHoldsLaterMessages(t *testing.T) {
	rec := &fakeRecorder{}
	ap := policy.NewApprovals(10)
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...), Approvals: ap}, nil)
	h.send(t, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "CREATE TABLE x (a int)"}, &pgproto3.Query{String: "SELECT 2"})
	if q := h.receiveServer(t).(*pgproto3.Query); q.String != "SELECT 1" {
		t.Fatalf("server got %q", q.String)
	}
	held := waitHold(t, ap)
	if n := len(rec.kinds(audit.KindStatement)); n != 1 {
		t.Fatalf("%d statement records while held", n)
	}
	if _, err := ap.Decide(held.ID, dba, true, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CREATE TABLE x (a int)", "SELECT 2"} {
		if q := h.receiveServer(t).(*pgproto3.Query); q.String != want {
			t.Fatalf("server got %q, want %q", q.String, want)
		}
	}
}

// TestGrantAllowsUntilRevoked: a grant covers what a review rule would
// hold; the statement record names it; once revoked, the cached verdict is
// not reused.
func TestGrantAllowsUntilRevoked(t *testing.T) {
	rec := &fakeRecorder{}
	ap := policy.NewApprovals(10)
	g, err := policy.OpenGrants(filepath.Join(t.TempDir(), "grants.json"))
	if err != nil {
		t.Fatal(err)
	}
	gr, err := g.Create("deployer", "t", []policy.Class{policy.ClassDDL}, time.Hour, "migration", dba, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(testRules()...), Approvals: ap, Grants: g}, []string{"deployer"})
	h.send(t, &pgproto3.Query{String: "CREATE TABLE x (a int)"})
	h.receiveServer(t)
	st := lastStatement(t, rec)
	if st.Decision.Action != "allow" || st.Decision.Rule != "grant:"+gr.ID || st.Detail["grant"] != gr.ID {
		t.Fatalf("record %+v %+v", st.Decision, st.Detail)
	}
	h.serve(t, &pgproto3.CommandComplete{CommandTag: []byte("CREATE TABLE")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	if _, err := g.Revoke(gr.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.send(t, &pgproto3.Query{String: "CREATE TABLE x (a int)"})
	receiveClient[*pgproto3.NoticeResponse](t, h)
	if held := waitHold(t, ap); held.Rule != "ddl-review" {
		t.Fatalf("hold %+v", held)
	}
}

// TestNoPolicyDenies: without a policy source everything is denied.
func TestNoPolicyDenies(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{}, nil)
	h.send(t, &pgproto3.Query{String: "SELECT 1"})
	q := h.receiveServer(t).(*pgproto3.Query)
	expectRaise(t, q.String, "42501", lastStatement(t, rec))
}

// TestTerminates finds a Terminate among buffered messages.
func TestTerminates(t *testing.T) {
	q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	x, _ := (&pgproto3.Terminate{}).Encode(nil)
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{nil, false}, {q, false}, {x, true}, {append(q, x...), true}, {append(q[:len(q)-1:len(q)-1], x...), false}, {[]byte{'Q', 0, 0, 0, 1, 'X', 0, 0, 0, 4}, false},
	} {
		if got := terminates(tc.b); got != tc.want {
			t.Errorf("terminates(%q) = %v", tc.b, got)
		}
	}
}

// benchRules is a realistic policy of 20 rules over four identities, two
// targets and a dozen tables.
func benchRules() []policy.Rule {
	cls := func(cs ...policy.Class) []policy.Class { return cs }
	ids := func(is ...string) []string { return is }
	dba := policy.Approvers{Groups: []string{"dba"}, Timeout: policy.Duration(time.Hour)}
	return []policy.Rule{
		{ID: "app-reads", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app"), Classes: cls(policy.ClassSelect, policy.ClassSet, policy.ClassTransaction)}},
		{ID: "app-writes", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app"), Classes: cls(policy.ClassInsert, policy.ClassUpdate, policy.ClassDelete),
			Tables: []string{"pgbench_accounts", "pgbench_tellers", "pgbench_branches", "pgbench_history", "orders", "order_items"}}},
		{ID: "report-reads", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("nightly-report"), Targets: []string{"orders-db"}, Classes: cls(policy.ClassSelect, policy.ClassCopyOut, policy.ClassCopy)}},
		{ID: "deploy-dml", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("ci-deploy"), Classes: cls(policy.ClassSelect, policy.ClassInsert, policy.ClassUpdate, policy.ClassDelete, policy.ClassSet, policy.ClassTransaction)}},
		{ID: "deploy-ddl", Action: policy.ActionReview, Approvers: dba, When: policy.Conditions{Identities: ids("ci-deploy"), Classes: cls(policy.ClassDDL)}},
		{ID: "deploy-grants", Action: policy.ActionReview, Approvers: dba, When: policy.Conditions{Identities: ids("ci-deploy"), Classes: cls(policy.ClassGrant)}},
		{ID: "dba-all", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("dba")}},
		{ID: "no-bulk", Action: policy.ActionDeny, Reason: "bulk changes go through a migration", When: policy.Conditions{Classes: cls(policy.ClassDeleteWithoutWhere, policy.ClassUpdateWithoutWhere)}},
		{ID: "no-truncate", Action: policy.ActionDeny, When: policy.Conditions{Classes: cls(policy.ClassTruncate)}},
		{ID: "no-secrets", Action: policy.ActionDeny, When: policy.Conditions{Tables: []string{"secrets", "*.credentials", "vault.*"}}},
		{ID: "no-audit-writes", Action: policy.ActionDeny, When: policy.Conditions{Classes: cls(policy.ClassInsert, policy.ClassUpdate, policy.ClassDelete), Tables: []string{"audit.*"}}},
		{ID: "no-copy-in", Action: policy.ActionDeny, When: policy.Conditions{Identities: ids("app", "nightly-report"), Classes: cls(policy.ClassCopyIn)}},
		{ID: "no-code", Action: policy.ActionDeny, When: policy.Conditions{Identities: ids("app", "nightly-report"), Classes: cls(policy.ClassFunctionCall)}},
		{ID: "payments-review", Action: policy.ActionReview, Approvers: dba, When: policy.Conditions{Classes: cls(policy.ClassUpdate, policy.ClassDelete), Tables: []string{"payments"}}},
		{ID: "users-reads", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app", "ci-deploy"), Classes: cls(policy.ClassSelect), Tables: []string{"users", "public.sessions"}}},
		{ID: "history-append", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app"), Classes: cls(policy.ClassInsert), Tables: []string{"history_*"}}},
		{ID: "multi", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app", "ci-deploy"), Classes: cls(policy.ClassMultiStatement)}},
		{ID: "listen", Action: policy.ActionAllow, When: policy.Conditions{Identities: ids("app"), Classes: cls(policy.ClassSet)}},
		{ID: "staging-anything", Action: policy.ActionAllow, When: policy.Conditions{Targets: []string{"staging-db"}}},
		{ID: "unknown-review", Action: policy.ActionReview, Approvers: dba, When: policy.Conditions{Identities: ids("ci-deploy"), Classes: cls(policy.ClassUnknown)}},
	}
}

// BenchmarkDecision measures the per-statement cost of a decision under a
// 20-rule policy with a grants store: a verdict from the session's cache
// (the text seen before), a decision on a classified statement, and the
// whole cost for a text never seen (classification with pg_query, then
// the decision).
func BenchmarkDecision(b *testing.B) {
	g, err := policy.OpenGrants(filepath.Join(b.TempDir(), "grants.json"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		if _, err := g.Create(fmt.Sprintf("other-%d", i), "orders-db", []policy.Class{policy.ClassDDL}, time.Hour, "bench", dba, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	rules := benchRules()
	if len(rules) != 20 {
		b.Fatalf("%d rules", len(rules))
	}
	newBenchRelay := func(cacheSize int) *relay {
		s := NewServer(Options{Recorder: discardRecorder{}, Policy: rulesPolicy(rules...), Grants: g,
			Classifier: sql.New(sql.Options{CacheSize: cacheSize})})
		r := newRelay(s, &Session{Target: policy.Target{Name: "orders-db"}}, nil, nil)
		r.idents = []string{"app"}
		return r
	}
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 4242"
	b.Run("cached", func(b *testing.B) {
		r := newBenchRelay(0)
		info := r.s.opts.Classifier.Classify(q)
		for b.Loop() {
			if v := r.judge(q, info); v.Action != policy.ActionAllow {
				b.Fatal(v)
			}
		}
	})
	for _, bc := range []struct{ name, q string }{
		{"decide-select", q},
		{"decide-update", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7"},
		{"decide-multi", "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7; INSERT INTO pgbench_history VALUES (1, 2, 3, 4, now()); COMMIT"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newBenchRelay(0)
			info := r.s.opts.Classifier.Classify(bc.q)
			for b.Loop() {
				eng, hash := r.policy()
				grants, gkey := r.activeGrants()
				if v := r.decide(eng, hash, grants, gkey, info); v.Action != policy.ActionAllow {
					b.Fatal(v)
				}
			}
		})
	}
	b.Run("normalised", func(b *testing.B) {
		// A new text each time that differs only in a literal: the
		// classification and the verdict come from the normalised text.
		r := newBenchRelay(0)
		i := 0
		for b.Loop() {
			i++
			text := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i%100000)
			if v := r.judge(text, r.s.opts.Classifier.Classify(text)); v.Action != policy.ActionAllow {
				b.Fatal(v)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		r := newBenchRelay(-1)
		i := 0
		for b.Loop() {
			i++
			text := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i)
			if v := r.judge(text, r.s.opts.Classifier.Classify(text)); v.Action != policy.ActionAllow {
				b.Fatal(v)
			}
		}
	})
}

// TestVerdictTimeWindows: a multi-statement verdict expires at the
// earliest time window change of its statements, and a verdict kept with
// a prepared statement is made again at Execute once its window passed.
func TestVerdictTimeWindows(t *testing.T) {
	always := []policy.Window{{From: "00:00", To: "24:00"}}
	pol := rulesPolicy(
		policy.Rule{ID: "reads", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect}, Time: always}},
		policy.Rule{ID: "multi", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassMultiStatement}}})
	s := NewServer(Options{Recorder: discardRecorder{}, Policy: pol})
	r := newRelay(s, &Session{Target: policy.Target{Name: "t"}}, nil, nil)
	info := s.opts.Classifier.Classify("SELECT 1; SELECT 2")
	v := r.judge("SELECT 1; SELECT 2", info)
	if v.Action != policy.ActionAllow || v.ValidUntil.IsZero() {
		t.Fatalf("verdict %+v", v.Decision)
	}
	stale := v
	stale.Action, stale.Rule = policy.ActionDeny, "stale"
	stale.ValidUntil = time.Now().Add(-time.Second)
	if got := r.current(stale, info); got.Action != policy.ActionAllow || got.Rule != "reads" {
		t.Fatalf("expired verdict reused: %+v", got.Decision)
	}
	fresh := stale
	fresh.ValidUntil = time.Now().Add(time.Hour)
	if got := r.current(fresh, info); got.Rule != "stale" {
		t.Fatalf("valid verdict not reused: %+v", got.Decision)
	}
}

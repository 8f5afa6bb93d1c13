// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// expectServer reads len(want) messages on the server side and checks
// their types. Parse, Close and Query messages are copied, since the
// backend reuses its message values.
func expectServer(t *testing.T, h *relayHarness, want ...string) []pgproto3.FrontendMessage {
	t.Helper()
	var got []pgproto3.FrontendMessage
	for _, w := range want {
		m := h.receiveServer(t)
		if g := fmt.Sprintf("%T", m); g != "*pgproto3."+w {
			t.Fatalf("server got %s, want %s", g, w)
		}
		switch x := m.(type) {
		case *pgproto3.Parse:
			c := *x
			m = &c
		case *pgproto3.Close:
			c := *x
			m = &c
		case *pgproto3.Query:
			c := *x
			m = &c
		case *pgproto3.Describe:
			c := *x
			m = &c
		}
		got = append(got, m)
	}
	return got
}

// syntaxError is the server's answer to a text it cannot parse.
func syntaxError() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42601",
		Message: `syntax error at or near "selec"`, Position: 1, File: "scan.l", Line: 1188, Routine: "scanner_yyerror"}
}

// TestUnparsedQueryGetsServerError: a simple Query that tollgate's parser
// rejects is never sent as a Query: the server is asked to Parse it, and
// the client gets the server's own syntax error and ReadyForQuery, even
// under a policy that allows unknown statements.
func TestUnparsedQueryGetsServerError(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: allowAll()}, nil)
	h.send(t, &pgproto3.Query{String: "selec 1"})
	got := expectServer(t, h, "Parse", "Parse", "Bind", "Execute", "Sync")
	if p := got[0].(*pgproto3.Parse); p.Query != "selec 1" || p.Name != "" {
		t.Fatalf("probe %+v", p)
	}
	st := lastStatement(t, rec)
	if st.Decision.Action != "deny" || st.Detail["probe"] != "parse" || st.Detail["parse_error"] == "" || st.Detail["protocol"] != "simple" {
		t.Fatalf("record %+v %+v", st.Decision, st.Detail)
	}
	expectRaise(t, got[1].(*pgproto3.Parse).Query, "42501", st)
	h.serve(t, syntaxError(), &pgproto3.ReadyForQuery{TxStatus: 'E'})
	msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 {
		t.Fatalf("client got %#v", msgs)
	}
	if e := msgs[0].(*pgproto3.ErrorResponse); e.Code != "42601" || e.Position != 1 || e.Routine != "scanner_yyerror" {
		t.Fatalf("error %+v", e)
	}
	if z := msgs[1].(*pgproto3.ReadyForQuery); z.TxStatus != 'E' {
		t.Fatalf("status %c", z.TxStatus)
	}
	// The session goes on.
	h.send(t, &pgproto3.Query{String: "SELECT 1"})
	expectServer(t, h, "Query")
	h.serve(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if msgs := receiveClient[*pgproto3.ReadyForQuery](t, h); len(msgs) != 2 {
		t.Fatalf("client got %#v", msgs)
	}
	h.cconn.Close()
	<-h.done
	res := rec.kinds(audit.KindResult)
	slices.SortFunc(res, func(a, b *audit.Record) int { return strings.Compare(a.Detail["n"], b.Detail["n"]) })
	if len(res) != 2 || res[0].Detail["sqlstate"] != "42601" || res[0].Detail["statement_seq"] != fmt.Sprint(st.Seq) {
		for _, r := range res {
			t.Log(r.Detail)
		}
		t.Fatalf("results (statement seq %d)", st.Seq)
	}
}

// TestUnparsedQueryServerAccepts: when the server accepts what tollgate's
// parser rejected, the ParseComplete is not the client's, and the raise
// that follows refuses the statement with 42501.
func TestUnparsedQueryServerAccepts(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: allowAll()}, nil)
	h.send(t, &pgproto3.Query{String: "selec 1"})
	expectServer(t, h, "Parse", "Parse", "Bind", "Execute", "Sync")
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		serverRaise("42501", "tollgate: statement denied"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 {
		t.Fatalf("client got %#v", msgs)
	}
	if e := msgs[0].(*pgproto3.ErrorResponse); e.Code != "42501" || e.Where != "" {
		t.Fatalf("error %+v", e)
	}
}

// TestUnparsedParseNamed: a named Parse of text tollgate's parser rejects
// is sent as it is, then closed and followed by the raise: the client
// sees the server's error when it refuses the text, and nothing of
// tollgate's messages; what comes up to the client's Sync is discarded by
// the server.
func TestUnparsedParseNamed(t *testing.T) {
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: allowAll()}, nil)
	h.send(t, &pgproto3.Parse{Name: "s1", Query: "selec 1"}, &pgproto3.Bind{PreparedStatement: "s1"},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	got := expectServer(t, h, "Parse", "Close", "Parse", "Bind", "Execute", "Bind", "Execute", "Sync")
	if p := got[0].(*pgproto3.Parse); p.Name != "s1" || p.Query != "selec 1" {
		t.Fatalf("probe %+v", p)
	}
	if c := got[1].(*pgproto3.Close); c.ObjectType != 'S' || c.Name != "s1" {
		t.Fatalf("close %+v", c)
	}
	h.serve(t, syntaxError(), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 || msgs[0].(*pgproto3.ErrorResponse).Code != "42601" {
		t.Fatalf("client got %#v", msgs)
	}
	// Accepted by the server: ParseComplete and CloseComplete are dropped.
	h.send(t, &pgproto3.Parse{Name: "s2", Query: "selec 2"}, &pgproto3.Sync{})
	expectServer(t, h, "Parse", "Close", "Parse", "Bind", "Execute", "Sync")
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.CloseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		serverRaise("42501", "tollgate: statement denied"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	msgs = receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 || msgs[0].(*pgproto3.ErrorResponse).Code != "42501" {
		t.Fatalf("client got %#v", msgs)
	}
}

// TestEmptyStatementAllowed: an empty or comment-only statement is
// forwarded under a policy that allows only SELECT (the server answers
// EmptyQueryResponse), and recorded with the class empty; a rule naming
// the class denies it.
func TestEmptyStatementAllowed(t *testing.T) {
	selects := policy.Rule{ID: "reads", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect}}}
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(selects)}, nil)
	for _, text := range []string{"-- ping", "", ";", "--;", "/* nothing */ ;"} {
		h.send(t, &pgproto3.Query{String: text})
		if q := expectServer(t, h, "Query")[0].(*pgproto3.Query); q.String != text {
			t.Fatalf("server got %q, want %q", q.String, text)
		}
		st := lastStatement(t, rec)
		if st.Decision.Action != "allow" || strings.Join(st.Statement.Classes, ",") != "empty" {
			t.Fatalf("%q: record %+v %+v", text, st.Decision, st.Statement)
		}
		h.serve(t, &pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
		if _, ok := msgs[0].(*pgproto3.EmptyQueryResponse); !ok || len(msgs) != 2 {
			t.Fatalf("client got %#v", msgs)
		}
	}
	deny := policy.Rule{ID: "no-pings", Action: policy.ActionDeny, When: policy.Conditions{Classes: []policy.Class{policy.ClassEmpty}}}
	rec2 := &fakeRecorder{}
	h2 := newPolicyHarness(t, rec2, Options{Policy: rulesPolicy(selects, deny)}, nil)
	h2.send(t, &pgproto3.Query{String: "-- ping"})
	expectRaise(t, expectServer(t, h2, "Query")[0].(*pgproto3.Query).String, "42501", lastStatement(t, rec2))
}

// simple sends a Query, expects it (or a raise in its place) at the server,
// answers it with msgs and returns the statement record and what the
// client got.
func (h *relayHarness) simple(t *testing.T, rec *fakeRecorder, text string, msgs ...pgproto3.BackendMessage) (*audit.Record, string, []pgproto3.BackendMessage) {
	t.Helper()
	h.send(t, &pgproto3.Query{String: text})
	q := expectServer(t, h, "Query")[0].(*pgproto3.Query)
	st := lastStatement(t, rec)
	h.serve(t, append(msgs, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
	return st, q.String, receiveClient[*pgproto3.ReadyForQuery](t, h)
}

// TestSQLPrepareExecute: an SQL-level EXECUTE is judged by what its name
// was prepared as (once the server confirmed the PREPARE), and recorded
// with that statement's classes, tables and text; a PREPARE the server
// refused and a DEALLOCATE are followed.
func TestSQLPrepareExecute(t *testing.T) {
	rules := policy.Rule{ID: "rw", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{
		policy.ClassSelect, policy.ClassDelete, policy.ClassSet, policy.ClassMultiStatement}}}
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(rules)}, nil)
	complete := func(tag string) *pgproto3.CommandComplete { return &pgproto3.CommandComplete{CommandTag: []byte(tag)} }

	// Unknown name: judged unknown, denied; the server says whether the
	// name exists (see TestSQLExecuteUnknownName).
	st := h.probeName(t, rec, "EXECUTE p(7)", "p", false)
	if st.Decision.Action != "deny" || st.Detail[audit.DetailPrepared] != "unknown" {
		t.Fatalf("unknown execute: %+v %+v", st.Decision, st.Detail)
	}

	h.simple(t, rec, "PREPARE p AS SELECT $1::int", complete("PREPARE"))
	st, sent, _ := h.simple(t, rec, "EXECUTE p(7)", complete("SELECT 1"))
	if st.Decision.Action != "allow" || sent != "EXECUTE p(7)" || strings.Join(st.Statement.Classes, ",") != "select" ||
		st.Detail[audit.DetailPrepared] != "PREPARE p AS SELECT $1::int" {
		t.Fatalf("execute: %+v %+v %+v", st.Decision, st.Statement, st.Detail)
	}
	// A PREPARE the server refuses (the name exists) changes nothing.
	h.simple(t, rec, "PREPARE p AS DELETE FROM orders WHERE id = $1",
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P05", Message: `prepared statement "p" already exists`})
	st, _, _ = h.simple(t, rec, "EXPLAIN ANALYZE EXECUTE p(1)", complete("EXPLAIN"))
	if strings.Join(st.Statement.Classes, ",") != "select" || len(st.Statement.Tables) != 0 {
		t.Fatalf("after a refused PREPARE: %+v", st.Statement)
	}
	// A PREPARE and its EXECUTE in one text, and in one burst.
	st, _, _ = h.simple(t, rec, "PREPARE d AS DELETE FROM orders WHERE id = $1; EXECUTE d(1)", complete("PREPARE"), complete("DELETE 1"))
	if st.Decision.Action != "allow" || strings.Join(st.Statement.Classes, ",") != "delete,multi_statement" ||
		strings.Join(st.Statement.Tables, ",") != "orders" {
		t.Fatalf("prepare and execute in one text: %+v %+v", st.Decision, st.Statement)
	}
	h.send(t, &pgproto3.Query{String: "PREPARE e AS DELETE FROM items WHERE id = 1"}, &pgproto3.Query{String: "EXECUTE e"})
	expectServer(t, h, "Query", "Query")
	st = lastStatement(t, rec)
	if st.Decision.Action != "allow" || strings.Join(st.Statement.Tables, ",") != "items" {
		t.Fatalf("pipelined: %+v %+v", st.Decision, st.Statement)
	}
	h.serve(t, complete("PREPARE"), &pgproto3.ReadyForQuery{TxStatus: 'I'}, complete("DELETE 1"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	receiveClient[*pgproto3.ReadyForQuery](t, h)

	// DEALLOCATE forgets the name; DISCARD ALL forgets every name.
	h.simple(t, rec, "DEALLOCATE p", complete("DEALLOCATE"))
	if st = h.probeName(t, rec, "EXECUTE p(7)", "p", false); st.Decision.Action != "deny" {
		t.Fatalf("after DEALLOCATE: %+v", st.Decision)
	}
	h.simple(t, rec, "DISCARD ALL", complete("DISCARD ALL"))
	if st = h.probeName(t, rec, "EXECUTE d(1)", "d", false); st.Decision.Action != "deny" {
		t.Fatalf("after DISCARD ALL: %+v", st.Decision)
	}

	// A name prepared with a Parse is the same namespace: EXECUTE runs
	// what the Parse prepared.
	h.send(t, &pgproto3.Parse{Name: "ps", Query: "DELETE FROM orders WHERE id = 1"}, &pgproto3.Sync{})
	expectServer(t, h, "Parse", "Sync")
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	st, sent, _ = h.simple(t, rec, "EXECUTE ps", complete("DELETE 1"))
	if st.Decision.Action != "allow" || sent != "EXECUTE ps" || strings.Join(st.Statement.Tables, ",") != "orders" {
		t.Fatalf("execute of a protocol statement: %+v %+v", st.Decision, st.Statement)
	}
}

// probeName sends a Query with an SQL EXECUTE of a name tollgate knows
// nothing of, expects the server to be asked to describe the name in its
// place, answers as the server does when the name exists or not, and
// checks the client gets what the server would have said: its own 26000,
// or 42501 when the name exists.
func (h *relayHarness) probeName(t *testing.T, rec *fakeRecorder, text, name string, exists bool) *audit.Record {
	t.Helper()
	h.send(t, &pgproto3.Query{String: text})
	got := expectServer(t, h, "Describe", "Parse", "Bind", "Execute", "Sync")
	if d := got[0].(*pgproto3.Describe); d.ObjectType != 'S' || d.Name != name {
		t.Fatalf("describe %+v", d)
	}
	st := lastStatement(t, rec)
	expectRaise(t, got[1].(*pgproto3.Parse).Query, "42501", st)
	if st.Detail[audit.DetailProbe] != "describe" {
		t.Fatalf("record detail %+v", st.Detail)
	}
	want := "26000"
	if exists {
		want = "42501"
		h.serve(t, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}}, &pgproto3.NoData{},
			&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, serverRaise("42501", "tollgate: statement denied"),
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	} else {
		h.serve(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "26000", Message: `prepared statement "` + name + `" does not exist`},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 || msgs[0].(*pgproto3.ErrorResponse).Code != want {
		t.Fatalf("client got %#v, want %s", msgs, want)
	}
	return st
}

// TestSQLExecuteUnknownName: an EXECUTE of a name prepared where tollgate
// could not see it is refused with 42501 (the server's description of it
// never reaches the client); in the extended protocol the same probe
// stands for the Parse.
func TestSQLExecuteUnknownName(t *testing.T) {
	selects := policy.Rule{ID: "reads", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect}}}
	rec := &fakeRecorder{}
	h := newPolicyHarness(t, rec, Options{Policy: rulesPolicy(selects)}, nil)
	if st := h.probeName(t, rec, "EXECUTE hidden", "hidden", true); st.Decision.Action != "deny" {
		t.Fatalf("decision %+v", st.Decision)
	}
	h.send(t, &pgproto3.Parse{Query: "EXECUTE nosuch(1)"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	got := expectServer(t, h, "Describe", "Parse", "Bind", "Execute", "Bind", "Describe", "Sync")
	if d := got[0].(*pgproto3.Describe); d.ObjectType != 'S' || d.Name != "nosuch" {
		t.Fatalf("describe %+v", d)
	}
	h.serve(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "26000", Message: `prepared statement "nosuch" does not exist`},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	msgs := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(msgs) != 2 || msgs[0].(*pgproto3.ErrorResponse).Code != "26000" {
		t.Fatalf("client got %#v", msgs)
	}
}

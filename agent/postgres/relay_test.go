// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// fakeRecorder keeps records in memory; it can be made to fail.
type fakeRecorder struct {
	mu   sync.Mutex
	recs []*audit.Record
	fail bool
}

var errFakeLog = errors.New("fake log unwritable")

func (f *fakeRecorder) Record(_ context.Context, r *audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errFakeLog
	}
	r.Seq = uint64(len(f.recs))
	f.recs = append(f.recs, r)
	return nil
}

func (f *fakeRecorder) RecordAll(_ context.Context, rs []*audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errFakeLog
	}
	for _, r := range rs {
		r.Seq = uint64(len(f.recs))
		f.recs = append(f.recs, r)
	}
	return nil
}

func (f *fakeRecorder) RecordEventually(r *audit.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.Seq = uint64(len(f.recs))
	f.recs = append(f.recs, r)
}

func (f *fakeRecorder) RecordAllEventually(rs []*audit.Record) {
	for _, r := range rs {
		f.RecordEventually(r)
	}
}

func (f *fakeRecorder) kinds(k audit.Kind) []*audit.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*audit.Record
	for _, r := range f.recs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// relayHarness runs a relay between a test client and a test server.
type relayHarness struct {
	rec    *fakeRecorder
	client *pgproto3.Frontend // the test's client side
	cconn  net.Conn
	server *pgproto3.Backend // the test's server side
	sconn  net.Conn
	done   chan Stats
	slot   *holdSlot // where a cancel request finds the statement on hold
	// flushed is closed when the server side's last flush returned.
	flushed chan struct{}
	sent    chan struct{} // the same for the client side
}

func newRelayHarness(t *testing.T, rec *fakeRecorder) *relayHarness {
	return newPolicyHarness(t, rec, Options{Policy: allowAll()}, nil)
}

// staticPolicy is a PolicySource that never changes.
type staticPolicy struct {
	eng  *policy.Engine
	hash string
}

func (p staticPolicy) Current() (*policy.Engine, string) { return p.eng, p.hash }

// rulesPolicy is a policy of the given rules.
func rulesPolicy(rules ...policy.Rule) staticPolicy {
	return staticPolicy{eng: policy.NewEngine(&policy.Config{Rules: rules}), hash: "sha256:test"}
}

// allowAll allows every statement, unknown ones too.
func allowAll() staticPolicy {
	return rulesPolicy(policy.Rule{ID: "all", Action: policy.ActionAllow},
		policy.Rule{ID: "unknown", Action: policy.ActionAllow, When: policy.Conditions{Classes: unknownClasses}})
}

// newPolicyHarness is newRelayHarness with options (Recorder and Dial are
// set here) and identity names for the session.
func newPolicyHarness(t *testing.T, rec *fakeRecorder, opts Options, idents []string) *relayHarness {
	t.Helper()
	cA, cB := net.Pipe()
	uA, uB := net.Pipe()
	opts.Recorder = rec
	opts.Dial = func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no dialing in unit tests")
	}
	s := NewServer(opts)
	sess := &Session{Base: audit.Record{Session: "S1", Target: "t"}, Target: policy.Target{Name: "t"}, PolicyHash: "sha256:x"}
	h := &relayHarness{rec: rec, cconn: cB, sconn: uB, client: pgproto3.NewFrontend(cB, cB), server: pgproto3.NewBackend(uB, uB),
		done: make(chan Stats, 1)}
	h.slot = &holdSlot{}
	go func() {
		r := newRelay(s, sess, cA, uA)
		r.idents = idents
		r.holds = h.slot
		st := r.run(context.Background())
		cA.Close()
		h.done <- st
	}()
	t.Cleanup(func() { cB.Close(); uB.Close() })
	return h
}

func (h *relayHarness) send(t *testing.T, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	if h.sent != nil {
		<-h.sent // the previous flush owns the frontend until it returns
	}
	for _, m := range msgs {
		h.client.Send(m)
	}
	done := make(chan struct{})
	h.sent = done
	go func() {
		defer close(done)
		h.client.Flush()
	}()
}

func (h *relayHarness) serve(t *testing.T, msgs ...pgproto3.BackendMessage) {
	t.Helper()
	if h.flushed != nil {
		<-h.flushed // the previous flush owns the backend until it returns
	}
	for _, m := range msgs {
		h.server.Send(m)
	}
	done := make(chan struct{})
	h.flushed = done
	go func() {
		defer close(done)
		h.server.Flush()
	}()
}

// receiveServer reads one message on the server side.
func (h *relayHarness) receiveServer(t *testing.T) pgproto3.FrontendMessage {
	t.Helper()
	h.sconn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := h.server.Receive()
	if err != nil {
		t.Fatalf("server receive: %v", err)
	}
	return m
}

// receiveClient reads messages on the client side up to one of type T.
func receiveClient[T pgproto3.BackendMessage](t *testing.T, h *relayHarness) []pgproto3.BackendMessage {
	t.Helper()
	var got []pgproto3.BackendMessage
	h.cconn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := h.client.Receive()
		if err != nil {
			t.Fatalf("client receive: %v (after %d messages)", err, len(got))
		}
		got = append(got, m)
		if _, ok := m.(T); ok {
			return got
		}
	}
}

// TestRelaySimpleQuery: the statement record is durable before the server
// sees the query; the result record follows the response.
func TestRelaySimpleQuery(t *testing.T) {
	h := newRelayHarness(t, &fakeRecorder{})
	h.send(t, &pgproto3.Query{String: "SELECT secret FROM t WHERE pw = 'hunter2'"})
	m := h.receiveServer(t)
	if q, ok := m.(*pgproto3.Query); !ok || q.String != "SELECT secret FROM t WHERE pw = 'hunter2'" {
		t.Fatalf("server got %#v", m)
	}
	stmts := h.rec.kinds(audit.KindStatement)
	if len(stmts) != 1 {
		t.Fatalf("%d statement records when the server received the query", len(stmts))
	}
	if st := stmts[0].Statement; st.Text != "SELECT secret FROM t WHERE pw = $1" || st.Classes[0] != "select" || st.Tables[0] != "t" {
		t.Fatalf("statement %+v", st)
	}
	h.serve(t, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("secret"), DataTypeOID: 25, Format: 0}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("a")}}, &pgproto3.DataRow{Values: [][]byte{[]byte("b")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
		&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{9, 9, 9, 9}},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	got := receiveClient[*pgproto3.ReadyForQuery](t, h)
	if len(got) != 5 {
		t.Fatalf("client got %d messages (the real cancel key must be dropped): %#v", len(got), got)
	}
	h.send(t, &pgproto3.Terminate{})
	if _, ok := h.receiveServer(t).(*pgproto3.Terminate); !ok {
		t.Fatal("terminate not forwarded")
	}
	st := <-h.done
	if st.Reason != ReasonClientTerm {
		t.Fatalf("reason %q", st.Reason)
	}
	res := h.rec.kinds(audit.KindResult)
	if len(res) != 1 || res[0].Detail["tag"] != "SELECT 2" || res[0].Detail["rows"] != "2" || res[0].Detail["statement_seq"] != "0" {
		t.Fatalf("results %+v", res)
	}
}

// TestRelayPipelineError: an error in an extended-protocol pipeline skips
// to the Sync, and the queue follows the server.
func TestRelayPipelineError(t *testing.T) {
	h := newRelayHarness(t, &fakeRecorder{})
	h.send(t,
		&pgproto3.Parse{Name: "s1", Query: "INSERT INTO t VALUES ($1)"},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("2")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "SELECT 1"},
	)
	for i := 0; i < 9; i++ {
		h.receiveServer(t)
	}
	// One for the Parse (its text reaches the server), one per Execute
	// and one for the Query.
	if n := len(h.rec.kinds(audit.KindStatement)); n != 5 {
		t.Fatalf("%d statement records, want 5", n)
	}
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")},
		&pgproto3.BindComplete{}, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505", Message: "duplicate"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 23}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	h.cconn.Close()
	<-h.done
	res := h.rec.kinds(audit.KindResult)
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	byN := map[string]map[string]string{}
	for _, r := range res {
		byN[r.Detail["n"]] = r.Detail
	}
	if byN["1"]["tag"] != "INSERT 0 1" || byN["2"]["sqlstate"] != "23505" || byN["3"]["skipped"] != "true" || byN["4"]["tag"] != "SELECT 1" {
		t.Fatalf("results %v", byN)
	}
}

// TestRelayAuditFailure: when the log cannot take the statement record,
// the statement never reaches the server and the client gets FATAL 58000.
func TestRelayAuditFailure(t *testing.T) {
	rec := &fakeRecorder{fail: true}
	h := newRelayHarness(t, rec)
	received := make(chan pgproto3.FrontendMessage, 1)
	go func() {
		m, err := h.server.Receive()
		if err == nil {
			received <- m
		}
		close(received)
	}()
	h.send(t, &pgproto3.Query{String: "DELETE FROM t"})
	got := receiveClient[*pgproto3.ErrorResponse](t, h)
	e := got[len(got)-1].(*pgproto3.ErrorResponse)
	if e.Severity != "FATAL" || e.Code != "58000" {
		t.Fatalf("got %+v", e)
	}
	if m, ok := <-received; ok {
		t.Fatalf("server received %#v although it was not recorded", m)
	}
	if st := <-h.done; st.Reason != ReasonAudit {
		t.Fatalf("reason %q", st.Reason)
	}
}

// TestRelayMalformed: broken client messages end the session with FATAL
// 08P01 and never reach the server.
func TestRelayMalformed(t *testing.T) {
	for name, raw := range map[string][]byte{
		"negative length":   {'Q', 0xff, 0xff, 0xff, 0xf0},
		"bad type":          {'!', 0, 0, 0, 4},
		"oversized sync":    {'S', 0, 1, 0, 0},
		"sync with body":    {'S', 0, 0, 0, 5, 0},
		"unterminated":      append([]byte{'Q', 0, 0, 0, 12}, "SELECT 1"...),
		"bind negative len": append([]byte{'B', 0, 0, 0, 16}, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			h := newRelayHarness(t, &fakeRecorder{})
			go h.cconn.Write(raw)
			got := receiveClient[*pgproto3.ErrorResponse](t, h)
			e := got[len(got)-1].(*pgproto3.ErrorResponse)
			if e.Severity != "FATAL" || e.Code != "08P01" {
				t.Fatalf("got %+v", e)
			}
			if st := <-h.done; st.Reason != ReasonProtocol {
				t.Fatalf("reason %q", st.Reason)
			}
		})
	}
}

// TestRelayStandardConformingStringsOff: once the server reports the
// setting off, a text is classified as the server then reads it: a plain
// literal with a backslash that hides a DROP under the setting on does
// not hide it.
func TestRelayStandardConformingStringsOff(t *testing.T) {
	rec := &fakeRecorder{}
	h := newRelayHarness(t, rec)
	h.send(t, &pgproto3.Query{String: "SET standard_conforming_strings = off"})
	h.receiveServer(t)
	h.serve(t, &pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "off"},
		&pgproto3.CommandComplete{CommandTag: []byte("SET")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	h.send(t, &pgproto3.Query{String: `SELECT 'a\', $$'; DROP TABLE t; --$$`})
	h.receiveServer(t)
	st := lastStatement(t, rec)
	if !slices.Contains(st.Statement.Classes, "ddl") || !slices.Contains(st.Statement.Tables, "t") {
		t.Fatalf("classified as %+v", st.Statement)
	}
	h.serve(t, &pgproto3.CommandComplete{CommandTag: []byte("DROP TABLE")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)
	// While a SET is in flight, a text that reads differently both ways
	// is never sent for execution: the server is asked to parse it.
	h.send(t, &pgproto3.Query{String: "SET standard_conforming_strings = on"}, &pgproto3.Query{String: `SELECT 'a\', $$'; DROP TABLE t; --$$`})
	if q := h.receiveServer(t).(*pgproto3.Query); q.String != "SET standard_conforming_strings = on" {
		t.Fatalf("server got %q", q.String)
	}
	if _, ok := h.receiveServer(t).(*pgproto3.Parse); !ok {
		t.Fatal("ambiguous text not probed")
	}
	// The two records are appended together, in either order.
	probed := 0
	for _, st := range rec.kinds(audit.KindStatement) {
		if st.Detail["probe"] == "parse" {
			probed++
			if st.Statement.Text != "" || st.Decision.Action != "deny" {
				t.Fatalf("record %+v %+v", st.Statement, st.Decision)
			}
		}
	}
	if probed != 1 {
		t.Fatalf("%d probe records", probed)
	}
}

// FuzzRelay feeds arbitrary bytes as the client's and the server's
// streams: the relay must end without panicking or hanging.
func FuzzRelay(f *testing.F) {
	q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	p, _ := (&pgproto3.Parse{Name: "a", Query: "SELECT $1"}).Encode(nil)
	b, _ := (&pgproto3.Bind{PreparedStatement: "a", Parameters: [][]byte{[]byte("x")}}).Encode(nil)
	e, _ := (&pgproto3.Execute{}).Encode(nil)
	s, _ := (&pgproto3.Sync{}).Encode(nil)
	cc, _ := (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil)
	z, _ := (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(nil)
	er, _ := (&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01"}).Encode(nil)
	f.Add(q, append(cc, z...))
	f.Add(bytes.Join([][]byte{p, b, e, s, q}, nil), bytes.Join([][]byte{{'1', 0, 0, 0, 4}, {'2', 0, 0, 0, 4}, er, z, cc, z}, nil))
	f.Add([]byte{'d', 0, 0, 0, 5, 'x', 'c', 0, 0, 0, 4}, []byte{'G', 0, 0, 0, 7, 0, 0, 0})
	f.Fuzz(func(t *testing.T, client, server []byte) {
		cA, cB := net.Pipe()
		uA, uB := net.Pipe()
		s := NewServer(Options{Recorder: &fakeRecorder{}, MaxMessage: 1 << 16, Policy: allowAll(),
			Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }})
		done := make(chan struct{})
		go func() {
			newRelay(s, &Session{Base: audit.Record{Session: "F"}}, cA, uA).run(context.Background())
			cA.Close()
			close(done)
		}()
		go io.Copy(io.Discard, cB)
		go io.Copy(io.Discard, uB)
		go func() { cB.Write(client); cB.Close() }()
		go func() { uB.Write(server) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("relay did not end")
		}
		uB.Close()
	})
}

// BenchmarkRelayRoundTrip measures the relay's own cost per simple query
// round trip over loopback TCP, with an in-memory recorder: what the proxy
// adds besides the audit log's durability.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, mode := range []string{"simple", "extended", "no-relay"} {
		b.Run(mode, func(b *testing.B) {
			pair := func() (net.Conn, net.Conn) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				return c, s
			}
			cliSide, relayClient := pair()
			relayUp, srvSide := pair()
			defer cliSide.Close()
			defer srvSide.Close()
			if mode == "no-relay" {
				// The baseline: the same exchange without tollgate.
				cliSide, srvSide = pair()
				defer cliSide.Close()
				defer srvSide.Close()
			} else {
				s := NewServer(Options{Recorder: &discardRecorder{}, Policy: allowAll(), Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }})
				go newRelay(s, &Session{Base: audit.Record{Session: "B"}}, relayClient, relayUp).run(context.Background())
			}
			// The fake server answers each Query or Sync with one row.
			var resp []byte
			if mode == "extended" {
				resp, _ = (&pgproto3.ParseComplete{}).Encode(resp)
				resp, _ = (&pgproto3.BindComplete{}).Encode(resp)
			}
			resp, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4}}}).Encode(resp)
			resp, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("1234")}}).Encode(resp)
			resp, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(resp)
			resp, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(resp)
			go func() {
				be := pgproto3.NewBackend(srvSide, srvSide)
				for {
					m, err := be.Receive()
					if err != nil {
						return
					}
					switch m.(type) {
					case *pgproto3.Query, *pgproto3.Sync:
						srvSide.Write(resp)
					}
				}
			}()
			var req []byte
			if mode == "extended" {
				req, _ = (&pgproto3.Parse{Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"}).Encode(req)
				req, _ = (&pgproto3.Bind{Parameters: [][]byte{[]byte("42")}}).Encode(req)
				req, _ = (&pgproto3.Describe{ObjectType: 'P'}).Encode(req)
				req, _ = (&pgproto3.Execute{}).Encode(req)
				req, _ = (&pgproto3.Sync{}).Encode(req)
			} else {
				req, _ = (&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"}).Encode(req)
			}
			buf := make([]byte, len(resp))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := cliSide.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(cliSide, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardRecorder takes records and keeps nothing.
type discardRecorder struct{}

func (discardRecorder) Record(context.Context, *audit.Record) error      { return nil }
func (discardRecorder) RecordEventually(*audit.Record)                   {}
func (discardRecorder) RecordAll(context.Context, []*audit.Record) error { return nil }
func (discardRecorder) RecordAllEventually([]*audit.Record)              {}

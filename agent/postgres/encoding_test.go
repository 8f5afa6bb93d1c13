// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestTextCodec: statement text is read in the client encoding as the
// server reads it, and what cannot be read is an error, never a guess.
func TestTextCodec(t *testing.T) {
	for _, c := range []struct {
		enc, in, want string
		bad           bool
	}{
		{enc: "UTF8", in: "SELECT 'café'", want: "SELECT 'café'"},
		{enc: "UTF8", in: "SELECT 'caf\xe9'", bad: true},
		{enc: "SQL_ASCII", in: "SELECT 'caf\xe9'", want: "SELECT 'caf\xe9'"},
		{enc: "LATIN1", in: "SELECT 'caf\xe9'", want: "SELECT 'café'"},
		{enc: "WIN1251", in: "SELECT '\xcf\xf0\xe8'", want: "SELECT 'При'"},
		// 表 in Shift-JIS ends in the byte of a backslash.
		{enc: "SJIS", in: "SELECT E'\x95\x5c'", want: "SELECT E'表'"},
		{enc: "SJIS", in: "SELECT '\x81\x27'", bad: true},
		{enc: "BIG5", in: "SELECT '\xa5\x5c'", want: "SELECT '功'"},
		{enc: "GB18030", in: "SELECT '\x81\x30\x81\x30'", want: "SELECT '\u0080'"},
		{enc: "GBK", in: "SELECT '\x81\x30\x81\x30'", bad: true},
		{enc: "EUC_JP", in: "SELECT '\xc6\xfc'", want: "SELECT '日'"},
		{enc: "EUC_TW", in: "SELECT 1", want: "SELECT 1"},
		{enc: "EUC_TW", in: "SELECT '\xc4\xa1'", bad: true},
	} {
		codec, ok := codecFor(c.enc)
		if !ok {
			t.Fatalf("%s unknown", c.enc)
		}
		got, err := codec.decode(c.in)
		if c.bad {
			if !errors.Is(err, errUnreadable) {
				t.Errorf("%s %q: %q, %v; want errUnreadable", c.enc, c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s %q: %q, %v; want %q", c.enc, c.in, got, err, c.want)
		}
	}
	if _, ok := codecFor("KLINGON"); ok {
		t.Fatal("an unknown encoding was accepted")
	}
	latin1, _ := codecFor("LATIN1")
	if got := latin1.encode("déjà 表"); got != "d\xe9j\xe0 ?" {
		t.Fatalf("encode %q", got)
	}
	sjis, _ := codecFor("SJIS")
	if got := sjis.encode("表"); got != "\x95\x5c" {
		t.Fatalf("encode %q", got)
	}
	tw, _ := codecFor("EUC_TW")
	if got := tw.encode("déjà"); got != "d?j?" {
		t.Fatalf("encode %q", got)
	}
}

// TestRelayClientEncoding: a session in Shift-JIS is classified as the
// server reads it, where a backslash byte ends a character; while a change
// of client_encoding may be in flight, a text that reads differently in
// another encoding is only ever parsed, never run.
func TestRelayClientEncoding(t *testing.T) {
	rec := &fakeRecorder{}
	h := newRelayHarness(t, rec)
	h.send(t, &pgproto3.Query{String: "SET client_encoding = 'SJIS'"})
	h.receiveServer(t)
	h.serve(t, &pgproto3.CommandComplete{CommandTag: []byte("SET")},
		&pgproto3.ParameterStatus{Name: "client_encoding", Value: "SJIS"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)

	// Read as bytes, the backslash escapes the quote and this is one
	// SELECT; read in Shift-JIS it is a SELECT and a DROP.
	h.send(t, &pgproto3.Query{String: "SELECT E'\x95\x5c'; DROP TABLE t; --'"})
	h.receiveServer(t)
	st := lastStatement(t, rec)
	if !slices.Contains(st.Statement.Classes, "ddl") || !slices.Contains(st.Statement.Tables, "t") {
		t.Fatalf("classified as %+v", st.Statement)
	}
	h.serve(t, &pgproto3.CommandComplete{CommandTag: []byte("DROP TABLE")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	receiveClient[*pgproto3.ReadyForQuery](t, h)

	// Back to UTF-8 with the next text sent before the server answered:
	// "ā" ends in 0x81, which Shift-JIS joins to the backslash after it.
	h.send(t, &pgproto3.Query{String: "SET client_encoding = 'UTF8'"}, &pgproto3.Query{String: "SELECT E'ā\\'; DROP TABLE t; --'"})
	if q := h.receiveServer(t).(*pgproto3.Query); q.String != "SET client_encoding = 'UTF8'" {
		t.Fatalf("server got %q", q.String)
	}
	if _, ok := h.receiveServer(t).(*pgproto3.Parse); !ok {
		t.Fatal("ambiguous text not probed")
	}
	probed := 0
	for _, st := range rec.kinds(audit.KindStatement) {
		if st.Detail[audit.DetailProbe] == "parse" {
			probed++
		}
	}
	if probed != 1 {
		t.Fatalf("%d probe records", probed)
	}
}

// TestRelayClientEncodingSettled: once the server reported UTF-8 and
// nothing is in flight, the same text is one SELECT and runs.
func TestRelayClientEncodingSettled(t *testing.T) {
	rec := &fakeRecorder{}
	h := newRelayHarness(t, rec)
	h.send(t, &pgproto3.Query{String: "SELECT E'ā\\'; DROP TABLE t; --'"})
	if q, ok := h.receiveServer(t).(*pgproto3.Query); !ok || q.String != "SELECT E'ā\\'; DROP TABLE t; --'" {
		t.Fatalf("server got %#v", q)
	}
	st := lastStatement(t, rec)
	if slices.Contains(st.Statement.Classes, "ddl") || st.Statement.Classes[0] != "select" {
		t.Fatalf("classified as %+v", st.Statement)
	}
}

// TestRelaySettingUnsynced: a setting changed by an Execute is reported
// only at the next ReadyForQuery, so until then a text that reads
// differently with standard_conforming_strings off is only parsed.
func TestRelaySettingUnsynced(t *testing.T) {
	rec := &fakeRecorder{}
	h := newRelayHarness(t, rec)
	h.send(t, &pgproto3.Parse{Query: "SET standard_conforming_strings = off"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	for range 3 {
		h.receiveServer(t)
	}
	h.serve(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CommandComplete{CommandTag: []byte("SET")})
	receiveClient[*pgproto3.CommandComplete](t, h)
	h.send(t, &pgproto3.Parse{Query: `SELECT 'a\', $$'; DROP TABLE t; --$$`})
	h.receiveServer(t) // the Flush
	p, ok := h.receiveServer(t).(*pgproto3.Parse)
	if !ok {
		t.Fatal("server got no Parse")
	}
	st := lastStatement(t, rec)
	if st.Detail[audit.DetailProbe] != "parse" || st.Decision.Action != "deny" {
		t.Fatalf("Parse %q sent as %+v %+v", p.Query, st.Detail, st.Decision)
	}
}

// FuzzTextCodec: whatever bytes a client sends, reading them in any
// client encoding never panics, and what is read is valid UTF-8 that
// keeps every ASCII byte where no multibyte character took it.
func FuzzTextCodec(f *testing.F) {
	f.Add("SELECT E'\x95\x5c'; DROP TABLE t; --'", "SJIS")
	f.Add("SELECT '\x81\x30\x81\x30'", "GB18030")
	f.Add("SELECT 'caf\xe9'", "LATIN1")
	f.Add("SELECT E'ā\\'", "UTF8")
	f.Fuzz(func(t *testing.T, text, enc string) {
		c, ok := codecFor(enc)
		if !ok {
			return
		}
		s, err := c.decode(text)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) && normEncoding(enc) != "sqlascii" {
			t.Fatalf("%s %q read as invalid UTF-8 %q", enc, text, s)
		}
		if isASCII(text) && s != text {
			t.Fatalf("%s changed ASCII %q to %q", enc, text, s)
		}
		_ = c.encode(s)
		for _, r := range readings(text) {
			if !utf8.ValidString(r) {
				t.Fatalf("reading %q invalid", r)
			}
		}
	})
}

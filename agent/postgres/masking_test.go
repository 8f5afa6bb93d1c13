// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// fixtureOID is the table of the unit tests' catalog:
// public.customers(id, email, note).
const fixtureOID = 16500

// testMasking returns a masking state whose catalog knows the fixture
// table without a connection: a lookup of any other table fails.
func testMasking(t testing.TB) *maskState {
	t.Helper()
	m, err := mask.New([]policy.Masking{
		{ID: "pii", Columns: []string{"public.customers.email"}, Style: policy.MaskRedact},
		{ID: "secrets", Detectors: []policy.Detector{policy.DetectorCardNumber, policy.DetectorEmail}, Style: policy.MaskRedact},
	}, "t", mask.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cat := newCatalog(func(context.Context) (*pgconn.PgConn, error) { return nil, errors.New("no catalog in unit tests") })
	cat.tables[fixtureOID] = map[int16]mask.Column{
		1: {Schema: "public", Table: "customers", Name: "id"},
		2: {Schema: "public", Table: "customers", Name: "email"},
		3: {Schema: "public", Table: "customers", Name: "note"},
	}
	return &maskState{sess: m.Session(mask.Subject{}), cat: cat}
}

var fixtureDesc = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
	{Name: []byte("id"), TableOID: fixtureOID, TableAttributeNumber: 1, DataTypeOID: 23},
	{Name: []byte("e"), TableOID: fixtureOID, TableAttributeNumber: 2, DataTypeOID: 25},
	{Name: []byte("note"), TableOID: fixtureOID, TableAttributeNumber: 3, DataTypeOID: 25},
}}

// runMasked runs a relay with masking between a client that sends
// clientMsgs and reads everything, and a server that reads everything and
// sends server once the first client message arrived. It returns what the
// client received and how the relay ended.
func runMasked(t testing.TB, clientMsgs, server []byte) ([]byte, Stats) {
	t.Helper()
	cA, cB := net.Pipe()
	uA, uB := net.Pipe()
	s := NewServer(Options{Recorder: &fakeRecorder{}, MaxMessage: 1 << 16,
		Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }})
	done := make(chan Stats, 1)
	ended := make(chan struct{})
	r := newRelay(s, &Session{Base: audit.Record{Session: "M"}}, cA, uA)
	r.mk = testMasking(t)
	go func() {
		st := r.run(context.Background())
		close(ended)
		cA.Close()
		done <- st
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(cB)
		got <- b
	}()
	go func() {
		// The fake server hangs up after its answer, but only once the
		// client's messages have all been forwarded (or the relay ended):
		// otherwise the relay could see the hang-up while still forwarding
		// them and end as "upstream error" before what the test watches.
		var hdr [1]byte
		if _, err := io.ReadFull(uB, hdr[:]); err == nil {
			forwarded := make(chan struct{})
			go func() {
				n, once := 1, sync.OnceFunc(func() { close(forwarded) })
				buf := make([]byte, 4096)
				for {
					if n >= len(clientMsgs) {
						once()
					}
					k, err := uB.Read(buf)
					if err != nil {
						return
					}
					n += k
				}
			}()
			uB.Write(server)
			select {
			case <-forwarded:
			case <-ended:
			}
		}
		uB.Close()
	}()
	go cB.Write(clientMsgs)
	var st Stats
	select {
	case st = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("relay did not end")
	}
	cB.Close()
	return <-got, st
}

// checkFraming decodes what a client received: every message must be
// whole and valid, and every row of the fixture's description must have
// its email column masked. It returns the messages' types.
func checkFraming(t testing.TB, b []byte) string {
	t.Helper()
	var types strings.Builder
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("client got a broken stream after %q: %d bytes of a header", types.String(), len(b))
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || len(b) < 1+n {
			t.Fatalf("client got a broken stream after %q: length %d, %d bytes left", types.String(), n, len(b)-1)
		}
		typ, body := b[0], b[5:1+n]
		b = b[1+n:]
		var m pgproto3.BackendMessage
		switch typ {
		case 'D':
			m = &pgproto3.DataRow{}
		case 'T':
			m = &pgproto3.RowDescription{}
		case 'E':
			m = &pgproto3.ErrorResponse{}
		case 'C':
			m = &pgproto3.CommandComplete{}
		case 'Z':
			m = &pgproto3.ReadyForQuery{}
		case 'S':
			m = &pgproto3.ParameterStatus{}
		default:
			types.WriteByte('?')
			continue
		}
		if err := m.Decode(body); err != nil {
			t.Fatalf("client got a malformed %c after %q: %v", typ, types.String(), err)
		}
		types.WriteByte(typ)
		if d, ok := m.(*pgproto3.DataRow); ok && len(d.Values) == 3 && d.Values[1] != nil && string(d.Values[1]) != "[MASKED:pii]" {
			t.Fatalf("email column sent as %q", d.Values[1])
		}
	}
	return types.String()
}

func encode(msgs ...pgproto3.Message) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

// TestMaskRows: rows of a result under a column rule are rewritten one by
// one, NULLs stay NULL, detectors apply to the other text columns, and a
// row with the wrong number of columns ends the session with FATAL 08P01
// rather than a broken stream.
func TestMaskRows(t *testing.T) {
	q := encode(&pgproto3.Query{String: "SELECT id, email AS e, note FROM customers"})
	server := encode(fixtureDesc,
		&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("jane@example.com"), []byte("card 4111 1111 1111 1111")}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil, nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	got, st := runMasked(t, q, server)
	if types := checkFraming(t, got); types != "TDDCZ" {
		t.Fatalf("client got %q (%v)", types, st.Err)
	}
	if bytes.Contains(got, []byte("jane@example.com")) || bytes.Contains(got, []byte("4111 1111")) {
		t.Fatalf("raw value sent: %q", got)
	}
	if !bytes.Contains(got, []byte("card [MASKED:card_number]")) {
		t.Fatalf("detector did not mask the note: %q", got)
	}

	bad := encode(fixtureDesc, &pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("x")}})
	got, st = runMasked(t, q, bad)
	if types := checkFraming(t, got); types != "TE" || st.Reason != ReasonProtocol {
		t.Fatalf("short row: client got %q, reason %q", types, st.Reason)
	}
}

// FuzzMaskRows feeds the relay's masking path rows of arbitrary values
// (any length, NULLs, huge ones, wrong column counts) after a
// RowDescription with a masked column, or arbitrary bytes: the relay never
// panics, the client's stream always decodes whole, and no email value
// leaves unmasked.
func FuzzMaskRows(f *testing.F) {
	f.Add([]byte("1\x00jane@example.com\x00note\x00\x01\x00\x01\x00\x01"), false)
	f.Add([]byte("7\x00\xffhuge\x004111111111111111"), false)
	f.Add([]byte("1\x00\xfe"), false)
	f.Add(encode(&pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("a@b.co"), nil}}), true)
	f.Add([]byte{'D', 0, 0, 0, 6, 0, 3}, true)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		q := encode(&pgproto3.Query{String: "SELECT id, email AS e, note FROM customers"})
		server := encode(fixtureDesc)
		if raw {
			server = append(server, data...)
		} else {
			server = append(server, fuzzRows(data)...)
			server = append(server, encode(&pgproto3.CommandComplete{CommandTag: []byte("SELECT")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
		}
		got, st := runMasked(t, q, server)
		if st.Err != nil && strings.Contains(st.Err.Error(), "internal error") {
			t.Fatalf("relay panicked: %v", st.Err)
		}
		if !raw {
			checkFraming(t, got)
			return
		}
		// Arbitrary bytes may end mid-message; what the client got must
		// still never hold an unmasked email of a row.
		fe := pgproto3.NewFrontend(bytes.NewReader(got), io.Discard)
		for {
			m, err := fe.Receive()
			if err != nil {
				return
			}
			if d, ok := m.(*pgproto3.DataRow); ok && len(d.Values) == 3 && d.Values[1] != nil && string(d.Values[1]) != "[MASKED:pii]" {
				t.Fatalf("email column sent as %q", d.Values[1])
			}
		}
	})
}

// fuzzRows makes rows of three values from data split at NUL bytes: a
// value "\x01" is NULL, one starting with 0xff is made 1 MiB long, one
// starting with 0xfe ends the row early (a wrong column count).
func fuzzRows(data []byte) []byte {
	vals := bytes.Split(data, []byte{0})
	var out []byte
	for len(vals) > 0 {
		row := &pgproto3.DataRow{}
		for len(row.Values) < 3 && len(vals) > 0 {
			v := vals[0]
			vals = vals[1:]
			switch {
			case bytes.Equal(v, []byte{1}):
				v = nil
			case len(v) > 0 && v[0] == 0xff:
				v = bytes.Repeat(append(v[1:], ' '), (1<<20)/(len(v))+1)
			case len(v) > 0 && v[0] == 0xfe:
				row.Values = append(row.Values, v)
				goto done
			}
			row.Values = append(row.Values, v)
		}
	done:
		out, _ = row.Encode(out)
	}
	return out
}

// TestCopySpecs: the COPY ... TO STDOUT statements of a text are read in
// order, with the query that describes their columns and their line
// format; COPY FROM and COPY to a file are not output to the client.
func TestCopySpecs(t *testing.T) {
	specs := copySpecs(`COPY customers (id, "E mail") TO STDOUT; COPY t FROM STDIN; COPY s.t TO '/tmp/x';
COPY (SELECT a FROM t WHERE b = 'x') TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', NULL 'n/a');
COPY t TO STDOUT (FORMAT binary); COPY t TO STDOUT WITH CSV HEADER`)
	if len(specs) != 4 {
		t.Fatalf("%d specs: %+v", len(specs), specs)
	}
	if specs[0].query != `SELECT "id", "E mail" FROM "customers"` || specs[0].format.CSV || specs[0].format.Delimiter != '\t' || specs[0].err != nil {
		t.Errorf("spec 0: %+v", specs[0])
	}
	f := specs[1].format
	if !strings.Contains(specs[1].query, "SELECT a FROM t WHERE b = 'x'") || !f.CSV || !f.Header || f.Delimiter != ';' || f.Quote != '\'' || f.Escape != '\'' || f.Null != "n/a" {
		t.Errorf("spec 1: %q %+v", specs[1].query, f)
	}
	if !specs[2].binary {
		t.Errorf("spec 2: %+v", specs[2])
	}
	if !specs[3].format.CSV || !specs[3].format.Header {
		t.Errorf("spec 3: %+v", specs[3])
	}
	if bad := copySpecs("COPY (SELECT FROM WHERE) TO STDOUT"); len(bad) != 1 || bad[0].err == nil {
		t.Errorf("unparseable COPY: %+v", bad)
	}
}

// TestParamLog: bind parameters in the log are masked by the detectors,
// all redacted when the statement names a table a column rule covers,
// binary ones shown by size, long ones cut after masking.
func TestParamLog(t *testing.T) {
	s := testMasking(t).sess
	b := &pgproto3.Bind{Parameters: [][]byte{[]byte("jane@example.com"), nil, []byte("plain"), {1, 2, 3}, bytes.Repeat([]byte("x"), 100)},
		ParameterFormatCodes: []int16{0, 0, 0, 1, 0}}
	got := paramLog(s, b, []string{"orders"})
	want := `"[MASKED:email]", NULL, "plain", (binary, 3 bytes), "` + strings.Repeat("x", maxParamShown) + `…"`
	if got != want {
		t.Errorf("paramLog = %s\nwant %s", got, want)
	}
	if got := paramLog(s, b, []string{"public.customers"}); !strings.HasPrefix(got, "[MASKED:pii], NULL, [MASKED:pii]") {
		t.Errorf("covered table: %s", got)
	}
	if got := paramLog(s, b, []string{"customers"}); !strings.HasPrefix(got, "[MASKED:pii]") {
		t.Errorf("unqualified covered table: %s", got)
	}
}

// TestMaskRefusal: a result whose masked column cannot carry a
// placeholder (an int under a column rule) is refused with ERROR 0A000
// before any row; the rest of the answer is dropped up to ReadyForQuery,
// except a reported setting; the session goes on in autocommit and is
// closed inside a transaction block.
func TestMaskRefusal(t *testing.T) {
	intDesc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("e"), TableOID: fixtureOID, TableAttributeNumber: 2, DataTypeOID: 23},
	}}
	q := encode(&pgproto3.Query{String: "SELECT email FROM customers; SET application_name = 'x'"})
	for _, tx := range []byte{'I', 'T'} {
		server := encode(intDesc, &pgproto3.DataRow{Values: [][]byte{[]byte("123")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ParameterStatus{Name: "application_name", Value: "x"},
			&pgproto3.CommandComplete{CommandTag: []byte("SET")}, &pgproto3.ReadyForQuery{TxStatus: tx})
		got, st := runMasked(t, q, server)
		types := checkFraming(t, got)
		if bytes.Contains(got, []byte("123")) {
			t.Fatalf("tx %c: refused value sent: %q", tx, got)
		}
		switch tx {
		case 'I':
			if types != "ESZ" || st.Reason == ReasonMaskRefused {
				t.Errorf("autocommit: client got %q, reason %q", types, st.Reason)
			}
		case 'T':
			if types != "ESZE" || st.Reason != ReasonMaskRefused {
				t.Errorf("transaction block: client got %q, reason %q", types, st.Reason)
			}
		}
		if !bytes.Contains(got, []byte("0A000")) {
			t.Errorf("tx %c: no 0A000 in %q", tx, got)
		}
	}
}

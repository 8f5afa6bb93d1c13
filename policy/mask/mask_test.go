// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// testKey is the hash key the tests' maskers read.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func newMasker(t testing.TB, entries ...policy.Masking) *mask.Masker {
	t.Helper()
	m, err := mask.New(entries, "orders-db", mask.Options{
		ReadKey: func(string) ([]byte, error) { return testKey, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Type OIDs used in row descriptions.
const (
	int4  = 23
	int8  = 20
	text  = 25
	vchar = 1043
	jsonb = 3802
	json  = 114
	textA = 1009
)

// Table OIDs of the fixture catalog.
const (
	customersOID = 16500
	ordersOID    = 16600
)

// catalog is the fixture schema: public.customers(id, name, email, card,
// ssn, profile, notes) and public.orders(id, customer, note).
var catalog = map[uint32][]string{
	customersOID: {"id", "name", "email", "card", "ssn", "profile", "notes"},
	ordersOID:    {"id", "customer", "note"},
}

var resolver = mask.ResolverFunc(func(_ context.Context, table uint32, att int16) (mask.Column, error) {
	cols, ok := catalog[table]
	if !ok || att < 1 || int(att) > len(cols) {
		return mask.Column{}, fmt.Errorf("no column %d in table %d", att, table)
	}
	name := map[uint32]string{customersOID: "customers", ordersOID: "orders"}[table]
	return mask.Column{Schema: "public", Table: name, Name: cols[att-1]}, nil
})

// fd describes a result column: name, table OID and attribute number (0
// for expressions), type OID.
func fd(name string, table uint32, att uint16, typ uint32) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), TableOID: table, TableAttributeNumber: att, DataTypeOID: typ}
}

func desc(fields ...pgproto3.FieldDescription) *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: fields}
}

func row(vals ...any) *pgproto3.DataRow {
	r := &pgproto3.DataRow{}
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			r.Values = append(r.Values, nil)
		case string:
			r.Values = append(r.Values, []byte(v))
		case []byte:
			r.Values = append(r.Values, v)
		}
	}
	return r
}

func strs(r *pgproto3.DataRow) []any {
	out := make([]any, len(r.Values))
	for i, v := range r.Values {
		if v != nil {
			out[i] = string(v)
		}
	}
	return out
}

var (
	piiRule = policy.Masking{
		ID: "customer-pii", Targets: []string{"orders-db"},
		Columns: []string{"public.customers.email", "*.*.ssn", "public.cust*.profile"},
		Style:   policy.MaskRedact,
	}
	cardRule = policy.Masking{
		ID: "cards", Columns: []string{"public.customers.card"}, Style: policy.MaskPartial,
	}
	secretsRule = policy.Masking{
		ID:        "secrets-anywhere",
		Detectors: policy.Detectors(),
		Style:     policy.MaskRedact,
	}
)

func TestMaskRowColumnsAndDetectors(t *testing.T) {
	s := newMasker(t, piiRule, cardRule, secretsRule).Session(mask.Subject{})
	// SELECT id, name AS n, email AS contact, card, ssn, profile, notes,
	// upper(email) AS shout FROM customers
	p, err := s.Plan(context.Background(), desc(
		fd("id", customersOID, 1, int4),
		fd("n", customersOID, 2, text),
		fd("contact", customersOID, 3, text),
		fd("card", customersOID, 4, text),
		fd("ssn", customersOID, 5, text),
		fd("profile", customersOID, 6, jsonb),
		fd("notes", customersOID, 7, text),
		fd("shout", 0, 0, text),
	), nil, resolver)
	if err != nil {
		t.Fatal(err)
	}
	ta := p.NewTally()
	r := row("7", "Jane Doe", fxEmail, "4111 1111 1111 1111", "123-45-6789",
		`{"k": "v"}`, "call me: "+strings.ToUpper(fxEmail)+" pwd="+fxPassword, nil)
	changed, err := ta.MaskRow(r)
	if err != nil || !changed {
		t.Fatalf("MaskRow = %v, %v", changed, err)
	}
	want := []any{"7", "Jane Doe", "[MASKED:customer-pii]", "**** **** **** 1111", "[MASKED:customer-pii]",
		`"[MASKED:customer-pii]"`, "call me: [MASKED:email] pwd=[MASKED:password]", nil}
	if got := strs(r); !reflect.DeepEqual(got, want) {
		t.Errorf("row =\n%q\nwant\n%q", got, want)
	}
	// A row with nothing to mask stays as it is.
	r = row("8", "Joe", nil, nil, nil, nil, "nothing here", "JOE")
	if changed, err := ta.MaskRow(r); err != nil || changed {
		t.Errorf("MaskRow(clean) = %v, %v", changed, err)
	}
	wantCounts := []mask.ColumnCount{
		{Column: "public.customers.email", Rule: "customer-pii", Masked: 1},
		{Column: "public.customers.card", Rule: "cards", Masked: 1},
		{Column: "public.customers.ssn", Rule: "customer-pii", Masked: 1},
		{Column: "public.customers.profile", Rule: "customer-pii", Masked: 1},
		{Column: "public.customers.notes", Found: []mask.DetectorCount{{"email", 1}, {"password", 1}}},
	}
	if got := ta.Counts(); !reflect.DeepEqual(got, wantCounts) {
		t.Errorf("counts =\n%+v\nwant\n%+v", got, wantCounts)
	}
	if ta.Rows() != 2 {
		t.Errorf("rows = %d", ta.Rows())
	}
}

func TestPlanFormatsAndTypes(t *testing.T) {
	ctx := context.Background()
	nullify := piiRule
	nullify.Binary = policy.BinaryNullify
	for _, tt := range []struct {
		name    string
		rule    policy.Masking
		desc    *pgproto3.RowDescription
		formats []int16
		in, out []any
		err     string
	}{{
		name: "binary text column is masked like text",
		rule: piiRule, desc: desc(fd("email", customersOID, 3, text)), formats: []int16{1},
		in: []any{fxEmail}, out: []any{"[MASKED:customer-pii]"},
	}, {
		name: "binary jsonb keeps its version byte",
		rule: piiRule, desc: desc(fd("profile", customersOID, 6, jsonb)), formats: []int16{1},
		in: []any{"\x01{\"a\": 1}"}, out: []any{"\x01\"[MASKED:customer-pii]\""},
	}, {
		name: "json text is a JSON string",
		rule: piiRule, desc: desc(fd("profile", customersOID, 6, json)),
		in: []any{`[1,2]`}, out: []any{`"[MASKED:customer-pii]"`},
	}, {
		name: "binary int under a rule is refused",
		rule: piiRule, desc: desc(fd("id", ordersOID, 1, int4), fd("ssn", customersOID, 5, int8)), formats: []int16{1, 1},
		err: "column public.customers.ssn is masked by rule customer-pii and its binary format (type OID 20) cannot carry a masked value: ask for text results",
	}, {
		name: "text int under a rule is refused",
		rule: piiRule, desc: desc(fd("ssn", customersOID, 5, int8)),
		err: "column public.customers.ssn is masked by rule customer-pii and its type (OID 20) cannot carry a masked value",
	}, {
		name: "nullify",
		rule: nullify, desc: desc(fd("id", ordersOID, 1, int4), fd("ssn", customersOID, 5, int8)), formats: []int16{1},
		in: []any{"\x00\x00\x00\x01", "\x00\x00\x00\x00\x07\x5b\xcd\x15"}, out: []any{"\x00\x00\x00\x01", nil},
	}, {
		name: "text array under a rule is refused",
		rule: piiRule, desc: desc(fd("ssn", 0, 0, textA)),
		err: "column ssn is masked by rule customer-pii and its type (OID 1009) cannot carry a masked value",
	}, {
		name: "expression named like a *.*.ssn column",
		rule: piiRule, desc: desc(fd("ssn", 0, 0, text), fd("email", 0, 0, text)),
		in: []any{"123-45-6789", fxEmail}, out: []any{"[MASKED:customer-pii]", fxEmail},
	}, {
		name: "format codes that do not fit",
		rule: piiRule, desc: desc(fd("a", 0, 0, text), fd("b", 0, 0, text), fd("c", 0, 0, text)), formats: []int16{0, 1},
		err: "result format codes do not match the columns: 2 format codes for 3 columns",
	}, {
		name: "unresolvable column fails closed",
		rule: piiRule, desc: desc(fd("x", customersOID, 99, text)),
		err: "resolve column 99 of table 16500: no column 99 in table 16500",
	}, {
		name: "detectors in binary text, not in binary int",
		rule: secretsRule, desc: desc(fd("a", 0, 0, text), fd("b", 0, 0, int8), fd("c", 0, 0, jsonb)), formats: []int16{1},
		in:  []any{"x " + fxEmail, fxEmail, "\x01{\"e\": \"" + fxEmail + "\", \"card\": 4111111111111111}"},
		out: []any{"x [MASKED:email]", fxEmail, "\x01{\"e\": \"[MASKED:email]\", \"card\": \"[MASKED:card_number]\"}"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			s := newMasker(t, tt.rule).Session(mask.Subject{})
			p, err := s.Plan(ctx, tt.desc, tt.formats, resolver)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Plan error = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := row(tt.in...)
			if _, err := p.NewTally().MaskRow(r); err != nil {
				t.Fatal(err)
			}
			if got := strs(r); !reflect.DeepEqual(got, tt.out) {
				t.Errorf("row = %q, want %q", got, tt.out)
			}
		})
	}
}

func TestRefuseError(t *testing.T) {
	s := newMasker(t, piiRule).Session(mask.Subject{})
	_, err := s.Plan(context.Background(), desc(fd("ssn", customersOID, 5, int8)), nil, resolver)
	var re *mask.RefuseError
	if !errors.Is(err, mask.ErrRefused) || !errors.As(err, &re) || re.Rule != "customer-pii" || re.Column != "public.customers.ssn" {
		t.Errorf("err = %#v", err)
	}
	if _, err := s.Plan(context.Background(), desc(fd("email", customersOID, 3, text)), nil, nil); !errors.Is(err, mask.ErrNoResolver) {
		t.Errorf("no resolver: err = %v", err)
	}
}

func TestExemptions(t *testing.T) {
	pii := piiRule
	pii.Exempt = []string{"dba"}
	m := newMasker(t, pii, secretsRule)
	d := desc(fd("email", customersOID, 3, text), fd("notes", customersOID, 7, text))
	for _, tt := range []struct {
		subj     mask.Subject
		out      []any
		exempted []mask.Exemption
	}{
		{mask.Subject{Identities: []string{"nightly"}}, []any{"[MASKED:customer-pii]", "[MASKED:email]"}, nil},
		{mask.Subject{Identities: []string{"nightly", "dba"}}, []any{"[MASKED:email]", "[MASKED:email]"},
			[]mask.Exemption{{Rule: "customer-pii", By: "identity dba"}}},
		{mask.Subject{Grants: []string{"secrets-anywhere", "customer-pii"}}, []any{fxEmail, fxEmail},
			[]mask.Exemption{{Rule: "customer-pii", By: "grant"}, {Rule: "secrets-anywhere", By: "grant"}}},
	} {
		s := m.Session(tt.subj)
		if got := s.Exempted(); !reflect.DeepEqual(got, tt.exempted) {
			t.Errorf("%+v: exempted = %+v, want %+v", tt.subj, got, tt.exempted)
		}
		p, err := s.Plan(context.Background(), d, nil, resolver)
		if err != nil {
			t.Fatal(err)
		}
		r := row(fxEmail, fxEmail)
		if _, err := p.NewTally().MaskRow(r); err != nil {
			t.Fatal(err)
		}
		if got := strs(r); !reflect.DeepEqual(got, tt.out) {
			t.Errorf("%+v: row = %q, want %q", tt.subj, got, tt.out)
		}
	}
}

func TestTargets(t *testing.T) {
	other := piiRule
	other.Targets = []string{"billing-db"}
	s := newMasker(t, other).Session(mask.Subject{})
	if s.Active() {
		t.Error("a rule of another target applies")
	}
	p, err := s.Plan(context.Background(), desc(fd("email", customersOID, 3, text)), nil, nil)
	if err != nil || p.Masks() {
		t.Fatalf("Plan = %v, %v", p, err)
	}
	if _, err := p.NewTally().MaskRow(row("a", "b")); !errors.Is(err, mask.ErrColumnCount) {
		t.Errorf("2 values for 1 column: err = %v", err)
	}
}

func TestStyles(t *testing.T) {
	ctx := context.Background()
	hash := policy.Masking{ID: "h", Columns: []string{"*.*.email"}, Detectors: []policy.Detector{policy.DetectorCardNumber}, Style: policy.MaskHash, HashKeyFile: "/k"}
	partial := policy.Masking{ID: "p", Columns: []string{"*.*.email"}, Style: policy.MaskPartial, Keep: 6}
	for _, tt := range []struct {
		rule    policy.Masking
		in, out string
	}{
		{partial, "jane@example.com", "****@******e.com"},
		{partial, "1234", "***4"},
		{partial, "ab", "**"},
		{partial, "", ""},
		{partial, "Zoë Ünal", "*** **al"},
		{partial, `a\"b\u00e9c\\d`, `*****\\d`}, // escapes are one character, never split
		{hash, fxEmail, "hmac:" + hmacHex(fxEmail)},
	} {
		s := newMasker(t, tt.rule).Session(mask.Subject{})
		p, err := s.Plan(ctx, desc(fd("email", 0, 0, text)), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := row(tt.in)
		if _, err := p.NewTally().MaskRow(r); err != nil {
			t.Fatal(err)
		}
		if got := string(r.Values[0]); got != tt.out {
			t.Errorf("%s(%q) = %q, want %q", tt.rule.Style, tt.in, got, tt.out)
		}
	}
	// Hashes: equal values give equal outputs, in columns and in detected
	// spans, so joins work; another key gives others.
	s := newMasker(t, hash).Session(mask.Subject{})
	got, n := s.MaskText("paid with " + fxVisa)
	if want := "paid with hmac:" + hmacHex(fxVisa); got != want || n != 1 {
		t.Errorf("MaskText = %q, %d, want %q", got, n, want)
	}
	m2, err := mask.New([]policy.Masking{hash}, "db", mask.Options{ReadKey: func(string) ([]byte, error) {
		return bytes.Repeat([]byte{'z'}, 32), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if other, _ := m2.Session(mask.Subject{}).MaskText(fxVisa); other == "hmac:"+hmacHex(fxVisa) {
		t.Error("another key gives the same hash")
	}
}

func TestKeys(t *testing.T) {
	hash := policy.Masking{ID: "h", Columns: []string{"*.*.x"}, Style: policy.MaskHash, HashKeyFile: "/k"}
	_, err := mask.New([]policy.Masking{hash}, "db", mask.Options{ReadKey: func(string) ([]byte, error) { return []byte("short"), nil }})
	if !errors.Is(err, mask.ErrKeyFile) {
		t.Errorf("short key: err = %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, append(testKey, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if _, err := mask.ReadKeyFile(path); !errors.Is(err, mask.ErrKeyFile) {
			t.Errorf("key not owned by root: err = %v", err)
		}
		t.Skip("the rest needs root to own the key file")
	}
	k, err := mask.ReadKeyFile(path)
	if err != nil || !bytes.Equal(k, testKey) {
		t.Errorf("ReadKeyFile = %q, %v", k, err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.ReadKeyFile(path); !errors.Is(err, mask.ErrKeyFile) || !strings.Contains(err.Error(), "-rw-r-----") {
		t.Errorf("group-readable key: err = %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.ReadKeyFile(link); err == nil {
		t.Error("a symlinked key is accepted")
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.ReadKeyFile(path); !errors.Is(err, mask.ErrKeyFile) {
		t.Errorf("short key file: err = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	readErr := errors.New("no such file")
	for _, tt := range []struct {
		m    policy.Masking
		want string
	}{
		{policy.Masking{ID: "a", Columns: []string{"x.y"}, Style: policy.MaskRedact}, `masking a: bad column pattern "x.y" (want schema.table.column)`},
		{policy.Masking{ID: "a", Detectors: []policy.Detector{"ssn"}, Style: policy.MaskRedact}, `masking a: unknown detector "ssn"`},
		{policy.Masking{ID: "a", Patterns: []policy.Pattern{{Name: "p", Regex: "(x"}}, Style: policy.MaskRedact}, "masking a: pattern p: error parsing regexp: missing closing ): `(x`"},
		{policy.Masking{ID: "a", Columns: []string{"*.*.x"}, Style: "blur"}, `masking a: unknown style "blur"`},
		{policy.Masking{ID: "a", Columns: []string{"*.*.x"}, Style: policy.MaskHash, HashKeyFile: "/k"}, "masking a: no such file"},
	} {
		_, err := mask.New([]policy.Masking{tt.m}, "db", mask.Options{ReadKey: func(string) ([]byte, error) { return nil, readErr }})
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.m, err, tt.want)
		}
	}
	// One key file read once, however many rules use it.
	reads := 0
	h := policy.Masking{ID: "a", Columns: []string{"*.*.x"}, Style: policy.MaskHash, HashKeyFile: "/k"}
	h2 := h
	h2.ID = "b"
	if _, err := mask.New([]policy.Masking{h, h2}, "db", mask.Options{ReadKey: func(string) ([]byte, error) { reads++; return testKey, nil }}); err != nil || reads != 1 {
		t.Errorf("New = %v after %d reads", err, reads)
	}
}

// A plan is shared by the executions of a prepared statement, possibly on
// several goroutines; each has its own tally. Run with -race.
func TestPlanShared(t *testing.T) {
	s := newMasker(t, piiRule, cardRule, secretsRule).Session(mask.Subject{})
	p, err := s.Plan(context.Background(), benchDesc, nil, resolver)
	if err != nil {
		t.Fatal(err)
	}
	body := must(benchRow.Encode(nil))[5:]
	done := make(chan []byte)
	for range 4 {
		go func() {
			ta := p.NewTally()
			var out []byte
			for range 100 {
				out, _, _ = ta.AppendRow(out[:0], body)
			}
			done <- out
		}()
	}
	first := <-done
	for range 3 {
		if got := <-done; !bytes.Equal(got, first) {
			t.Errorf("goroutines disagree: %q vs %q", got, first)
		}
	}
}

// TestUnknownTable: a table the catalog cannot show (created in the
// session's open transaction) is planned like an expression: "*.*.name"
// patterns match by the name the client sees, other column patterns
// cannot, detectors still apply; any other resolver error fails the plan.
func TestUnknownTable(t *testing.T) {
	s := newMasker(t, piiRule).Session(mask.Subject{})
	unknown := mask.ResolverFunc(func(context.Context, uint32, int16) (mask.Column, error) {
		return mask.Column{}, fmt.Errorf("lookup: %w", mask.ErrUnknownTable)
	})
	p, err := s.Plan(context.Background(), desc(fd("ssn", 99999, 1, text), fd("email", 99999, 2, text)), nil, unknown)
	if err != nil {
		t.Fatal(err)
	}
	r := row("123-45-6789", "jane@example.com")
	if _, err := p.NewTally().MaskRow(r); err != nil {
		t.Fatal(err)
	}
	if got := strs(r); got[0] != "[MASKED:customer-pii]" || got[1] != "jane@example.com" {
		t.Errorf("row = %q", got)
	}
	failing := mask.ResolverFunc(func(context.Context, uint32, int16) (mask.Column, error) {
		return mask.Column{}, errors.New("connection refused")
	})
	if _, err := s.Plan(context.Background(), desc(fd("email", 99999, 2, text)), nil, failing); err == nil {
		t.Error("a failing resolver did not fail the plan")
	}
}

func TestCoversTable(t *testing.T) {
	s := newMasker(t, policy.Masking{ID: "customer-pii", Columns: []string{"public.customers.email"}, Style: policy.MaskRedact}).Session(mask.Subject{})
	for _, tt := range []struct{ schema, table, want string }{
		{"public", "customers", "customer-pii"},
		{"", "customers", "customer-pii"},
		{"", "CUSTOMERS", "customer-pii"},
		{"other", "customers", ""},
		{"public", "orders", ""},
	} {
		if got := s.CoversTable(tt.schema, tt.table); got != tt.want {
			t.Errorf("CoversTable(%q, %q) = %q, want %q", tt.schema, tt.table, got, tt.want)
		}
	}
}

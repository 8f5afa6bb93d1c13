// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	stdjson "encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

func TestMaskError(t *testing.T) {
	s := newMasker(t, piiRule, secretsRule).Session(mask.Subject{})
	e := &pgproto3.ErrorResponse{
		Severity: "ERROR", Code: "23505",
		Message:    `duplicate key value violates unique constraint "customers_ssn_key"`,
		Detail:     "Key (ssn)=(123-45-6789) already exists.",
		SchemaName: "public", TableName: "customers", ConstraintName: "customers_ssn_key",
	}
	if n := s.MaskError(e); n != 1 || e.Detail != "[MASKED:customer-pii]" || e.ConstraintName != "customers_ssn_key" {
		t.Errorf("unique violation: %d, %+v", n, e)
	}
	for _, tt := range []struct{ detail, want string }{
		{"Key (id)=(5) already exists.", "Key (id)=(5) already exists."},
		{`Key ("email", id)=(a, 5) already exists.`, "[MASKED:customer-pii]"},
		{"Key (lower(name))=(jo) already exists.", "[MASKED:customer-pii]"},
		{"Failing row contains (5, jo, null).", "[MASKED:customer-pii]"},
		{"Schlüssel »(id)=(5)« existiert bereits.", "[MASKED:customer-pii]"},
	} {
		e := &pgproto3.ErrorResponse{Detail: tt.detail, SchemaName: "public", TableName: "customers"}
		if s.MaskError(e); e.Detail != tt.want {
			t.Errorf("detail %q -> %q, want %q", tt.detail, e.Detail, tt.want)
		}
	}
	e = &pgproto3.ErrorResponse{
		Severity: "ERROR", Code: "22P02",
		Message:       `invalid input syntax for type integer: "` + fxVisa + `"`,
		Detail:        "Key (x)=(" + fxEmail + ")",
		Hint:          "token " + fxJWT,
		Where:         "SQL statement \"INSERT INTO t VALUES ('" + fxIBAN + "')\"",
		InternalQuery: "SELECT '" + fxAWSKey + "'",
		SchemaName:    "public", TableName: "orders",
		UnknownFields: map[byte]string{'Z': "password=" + fxPassword},
	}
	if n := s.MaskError(e); n != 6 {
		t.Errorf("masked %d values, want 6: %+v", n, e)
	}
	want := pgproto3.ErrorResponse{
		Severity: "ERROR", Code: "22P02",
		Message:       `invalid input syntax for type integer: "[MASKED:card_number]"`,
		Detail:        "Key (x)=([MASKED:email])",
		Hint:          "token [MASKED:jwt]",
		Where:         "SQL statement \"INSERT INTO t VALUES ('[MASKED:iban]')\"",
		InternalQuery: "SELECT '[MASKED:aws_access_key]'",
		SchemaName:    "public", TableName: "orders",
		UnknownFields: map[byte]string{'Z': "password=[MASKED:password]"},
	}
	if got, _ := stdjson.Marshal(e); string(got) != string(must(stdjson.Marshal(want))) {
		t.Errorf("error =\n%s\nwant\n%s", got, must(stdjson.Marshal(want)))
	}

	nr := &pgproto3.NoticeResponse{Severity: "NOTICE", Message: "secret is " + fxAWSSec + " for " + fxAWSKey}
	if n := s.MaskNotice(nr); n != 2 || nr.Message != "secret is [MASKED:aws_access_key] for [MASKED:aws_access_key]" {
		t.Errorf("notice: %d, %q", n, nr.Message)
	}
	no := &pgproto3.NotificationResponse{Channel: "keys", Payload: `{"k": "` + fxGCPKey + `"}`}
	if n := s.MaskNotification(no); n != 1 || no.Payload != `{"k": "[MASKED:gcp_key]"}` {
		t.Errorf("notification: %d, %q", n, no.Payload)
	}
	if got, n := s.MaskText("nothing to see"); got != "nothing to see" || n != 0 {
		t.Errorf("MaskText = %q, %d", got, n)
	}
	none := newMasker(t, piiRule).Session(mask.Subject{})
	if got, n := none.MaskText(fxEmail); got != fxEmail || n != 0 {
		t.Errorf("MaskText without detectors = %q, %d", got, n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOversize(t *testing.T) {
	m, err := mask.New([]policy.Masking{secretsRule}, "db", mask.Options{MaxScan: 64})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Session(mask.Subject{})
	p, err := s.Plan(context.Background(), desc(fd("a", 0, 0, text), fd("b", 0, 0, json)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 65)
	r := row(big, `"`+big+`"`)
	ta := p.NewTally()
	if _, err := ta.MaskRow(r); err != nil {
		t.Fatal(err)
	}
	if got := strs(r); got[0] != "[MASKED:oversize]" || got[1] != `"[MASKED:oversize]"` {
		t.Errorf("row = %q", got)
	}
	if c := ta.Counts(); len(c) != 2 || c[0].Found[0] != (mask.DetectorCount{Detector: "oversize", Count: 1}) {
		t.Errorf("counts = %+v", c)
	}
	if got, n := s.MaskText(big); got != "[MASKED:oversize]" || n != 1 {
		t.Errorf("MaskText = %q, %d", got, n)
	}
}

func TestAppendRow(t *testing.T) {
	s := newMasker(t, piiRule, secretsRule).Session(mask.Subject{})
	p, err := s.Plan(context.Background(), desc(fd("id", ordersOID, 1, int4), fd("email", customersOID, 3, text), fd("note", ordersOID, 3, text)), nil, resolver)
	if err != nil {
		t.Fatal(err)
	}
	ta := p.NewTally()
	for _, tt := range []struct {
		in, out *pgproto3.DataRow
	}{
		{row("1", fxEmail, "ok"), row("1", "[MASKED:customer-pii]", "ok")},
		{row("2", nil, "ok"), row("2", nil, "ok")},
		{row("3", "", "mail "+fxEmail), row("3", "[MASKED:customer-pii]", "mail [MASKED:email]")},
	} {
		msg := must(tt.in.Encode(nil))
		prefix := []byte("prefix")
		got, changed, err := ta.AppendRow(bytes.Clone(prefix), msg[5:])
		if err != nil {
			t.Fatal(err)
		}
		want := append(prefix, must(tt.out.Encode(nil))...)
		if !bytes.Equal(got, want) || changed != !bytes.Equal(msg, want[len(prefix):]) {
			t.Errorf("AppendRow = %q, %v\nwant %q", got, changed, want)
		}
	}
	if _, _, err := ta.AppendRow(nil, []byte{0, 2, 0, 0, 0, 1, 'x'}); err == nil {
		t.Error("a truncated row is accepted")
	}
	// Nothing to mask: the bytes pass, after the column count is checked.
	plain, err := newMasker(t).Session(mask.Subject{}).Plan(context.Background(), desc(fd("a", 0, 0, text)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := must(row(fxEmail).Encode(nil))
	if got, changed, err := plain.NewTally().AppendRow(nil, msg[5:]); err != nil || changed || !bytes.Equal(got, msg) {
		t.Errorf("AppendRow unmasked = %q, %v, %v", got, changed, err)
	}
	msg = must(row("a", "b").Encode(nil))
	if _, _, err := plain.NewTally().AppendRow(nil, msg[5:]); err == nil {
		t.Error("two values for one column pass")
	}
}

// secretFixtures are the fixture secrets with the context that makes them
// recognisable.
var secretFixtures = []struct{ raw, inText string }{
	{fxEmail, "contact " + fxEmail + " now"},
	{fxVisa, "card: " + fxVisa},
	{"4111 1111 1111 1111", "card 4111 1111 1111 1111."},
	{fxIBAN, "pay to " + fxIBAN},
	{fxAWSKey, "AKIA:" + fxAWSKey},
	{fxAWSSec, fxAWSKey + "," + fxAWSSec},
	{fxGCPKey, "key=" + fxGCPKey},
	{fxAzureKey, "AccountName=a;AccountKey=" + fxAzureKey + ";EndpointSuffix=x"},
	{fxJWT, "Authorization: Bearer " + fxJWT},
	{fxPEM, "key:\n" + fxPEM + "\n"},
	{fxPassword, "host=db password=" + fxPassword + " sslmode=require"},
	{"123-45-6789", "ssn 123-45-6789"},
}

// TestNoRawSecretLeaves sends every fixture secret through every exit, in
// every style, and greps the bytes that would leave for the raw values and
// their hex and base64 forms.
func TestNoRawSecretLeaves(t *testing.T) {
	for _, style := range []policy.MaskStyle{policy.MaskRedact, policy.MaskPartial, policy.MaskHash} {
		t.Run(string(style), func(t *testing.T) {
			cols := policy.Masking{ID: "cols", Columns: []string{"public.customers.*"}, Style: style, Binary: policy.BinaryNullify}
			dets := policy.Masking{
				ID: "dets", Detectors: policy.Detectors(), Style: style,
				Patterns: []policy.Pattern{{Name: "ssn", Regex: `\b\d{3}-\d{2}-\d{4}\b`}},
			}
			if style == policy.MaskHash {
				cols.HashKeyFile, dets.HashKeyFile = "/k", "/k"
			}
			s := newMasker(t, cols, dets).Session(mask.Subject{})
			var out []byte
			for _, fx := range secretFixtures {
				jsonText := string(must(stdjson.Marshal(map[string]string{"v": fx.inText})))
				// Rows: a masked column (text, binary text, json), free
				// text, JSON, binary text and binary jsonb under detectors.
				p, err := s.Plan(context.Background(), desc(
					fd("email", customersOID, 3, text), fd("card", customersOID, 4, vchar), fd("profile", customersOID, 6, jsonb),
					fd("note", ordersOID, 3, text), fd("j", 0, 0, jsonb), fd("bt", 0, 0, text), fd("bj", 0, 0, jsonb), fd("ssn", customersOID, 5, int8),
				), []int16{0, 1, 0, 0, 0, 1, 1, 1}, resolver)
				if err != nil {
					t.Fatal(err)
				}
				r := row(fx.raw, fx.raw, jsonText, fx.inText, jsonText, fx.inText, "\x01"+jsonText, fx.raw)
				out, _, err = p.NewTally().AppendRow(out, must(r.Encode(nil))[5:])
				if err != nil {
					t.Fatal(err)
				}
				// COPY, text and CSV.
				cp, err := s.PlanFields([]mask.Field{{Name: "email", Column: mask.Column{Schema: "public", Table: "customers", Name: "email"}}, {Name: "note"}})
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range []mask.CopyFormat{mask.TextCopy(), mask.CSVCopy()} {
					line := copyLine(f, fx.raw, fx.inText)
					o, _, err := cp.NewTally().MaskCopyLine(&f, line)
					if err != nil {
						t.Fatalf("%q: %v", line, err)
					}
					out = append(out, o...)
				}
				// Errors, notices, notifications, log text.
				e := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: fx.inText, Detail: fx.inText, Hint: fx.inText, Where: fx.inText}
				s.MaskError(e)
				out = must(e.Encode(out))
				nr := &pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: fx.inText}
				s.MaskNotice(nr)
				out = must(nr.Encode(out))
				no := &pgproto3.NotificationResponse{Channel: "c", Payload: fx.inText}
				s.MaskNotification(no)
				out = must(no.Encode(out))
				txt, _ := s.MaskText(fx.inText)
				out = append(out, txt...)
			}
			for _, fx := range secretFixtures {
				for _, form := range []string{
					fx.raw, hex.EncodeToString([]byte(fx.raw)), base64.StdEncoding.EncodeToString([]byte(fx.raw)),
					strings.ReplaceAll(fx.raw, "\n", `\n`),
				} {
					if i := bytes.Index(out, []byte(form)); i >= 0 {
						t.Errorf("%q leaves: ...%q...", form, out[max(0, i-40):min(len(out), i+len(form)+40)])
					}
				}
			}
		})
	}
}

// copyLine writes a COPY line of two values in format f.
func copyLine(f mask.CopyFormat, a, b string) []byte {
	enc := func(v string) string {
		if f.CSV {
			return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
		}
		return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(v)
	}
	return []byte(enc(a) + string(f.Delimiter) + enc(b) + "\n")
}

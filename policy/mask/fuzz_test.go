// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// fuzzSessions are the rule sets the fuzz targets pick from.
func fuzzSessions(t testing.TB) []*mask.Session {
	nullify := piiRule
	nullify.Binary = policy.BinaryNullify
	hashAll := policy.Masking{
		ID: "hash-all", Detectors: policy.Detectors(), Style: policy.MaskHash, HashKeyFile: "/k",
		Patterns: []policy.Pattern{{Name: "ssn", Regex: `\b(?P<value>\d{3}-\d{2}-\d{4})\b`}, {Name: "any", Regex: `\b`}},
	}
	partialAll := secretsRule
	partialAll.ID, partialAll.Style = "partial-all", policy.MaskPartial
	return []*mask.Session{
		newMasker(t).Session(mask.Subject{}),
		newMasker(t, piiRule, cardRule, secretsRule).Session(mask.Subject{}),
		newMasker(t, nullify, hashAll).Session(mask.Subject{}),
		newMasker(t, nullify, partialAll).Session(mask.Subject{}),
	}
}

// fuzzTypes are the column types a fuzzed description picks from.
var fuzzTypes = []uint32{text, vchar, int4, int8, json, jsonb, textA, 0, 16385, 17 /* bytea */, 1042, 19}

// FuzzMaskRow builds a row description and a row from the input:
// arbitrary column counts, types, table columns, format codes (not only 0
// and 1), NULLs, lengths, and now and then a huge value or a row whose
// column count differs from the description. Masking must not panic, and
// what it sends must decode as a DataRow with the description's column
// count: the client must never lose synchronisation.
func FuzzMaskRow(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, []byte{4, 'j', '@', 'x', '.', 'c', 0xff, 3, '1', '2', '3'}, uint8(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 5, 9}, []byte("\x10jane@example.com\x134111 1111 1111 1111\xff\x0b123-45-6789"), uint8(1))
	f.Add([]byte{0x25, 1, 0x33, 0}, []byte("\x20{\"k\": \"AKIAIOSFODNN7EXAMPLE\"}\x01\x01"), uint8(2))
	f.Add([]byte{4, 7, 5, 1, 6, 2}, []byte("\x05\x01{\"a\"\x00\x02[]"), uint8(3))
	f.Add([]byte{}, []byte{}, uint8(4))
	f.Add([]byte{0x11, 0x22}, []byte("\x03abc"), uint8(0x85))
	sessions := fuzzSessions(f)
	f.Fuzz(func(t *testing.T, spec, vals []byte, flags uint8) {
		s := sessions[int(flags)%len(sessions)]
		n := min(len(spec)/2, 200)
		fields := make([]pgproto3.FieldDescription, n)
		formats := make([]int16, n)
		for i := range n {
			a, b := spec[2*i], spec[2*i+1]
			fields[i] = pgproto3.FieldDescription{
				Name:        []byte{'c', 'a' + a%26},
				DataTypeOID: fuzzTypes[int(a)%len(fuzzTypes)],
			}
			switch b % 4 {
			case 1:
				fields[i].TableOID, fields[i].TableAttributeNumber = customersOID, uint16(1+int(a>>4)%7)
			case 2:
				fields[i].TableOID, fields[i].TableAttributeNumber = ordersOID, uint16(1+int(a>>4)%3)
			}
			formats[i] = int16(b >> 2 & 1)
			if b>>3 == 31 {
				formats[i] = int16(b) // not a real format code
			}
		}
		// Values: a length byte (0xff for NULL) and that many bytes.
		var values [][]byte
		for len(vals) > 0 && len(values) < n+1 {
			l := int(vals[0])
			vals = vals[1:]
			if l == 0xff {
				values = append(values, nil)
				continue
			}
			l = min(l, len(vals))
			values = append(values, vals[:l])
			vals = vals[l:]
		}
		if flags&0x80 != 0 && len(values) > 0 {
			// A huge value: repeated input, past the scan limit.
			huge := bytes.Repeat(append(bytes.Clone(values[0]), " 4111111111111111 a@b.co "...), 1+(mask.DefaultMaxScan>>10)/(len(values[0])+24)<<10)
			values[0] = huge[:min(len(huge), mask.DefaultMaxScan+1+int(flags&0x3f))]
		}
		for len(values) < n && flags&0x40 == 0 {
			values = append(values, []byte(nil))
		}
		if flags&0x40 == 0 {
			values = values[:n]
		}
		var rf []int16
		switch flags >> 4 & 3 {
		case 1:
			rf = formats
		case 2:
			if n > 0 {
				rf = formats[:1]
			}
		}
		p, err := s.Plan(context.Background(), &pgproto3.RowDescription{Fields: fields}, rf, resolver)
		if err != nil {
			if !errors.Is(err, mask.ErrRefused) && !errors.Is(err, mask.ErrFormats) {
				t.Fatalf("Plan: %v", err)
			}
			return
		}
		in := must((&pgproto3.DataRow{Values: values}).Encode(nil))
		ta := p.NewTally()
		out, changed, err := ta.AppendRow(nil, in[5:])
		if len(values) != n {
			if !errors.Is(err, mask.ErrColumnCount) {
				t.Fatalf("%d values for %d columns: err = %v", len(values), n, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("AppendRow: %v", err)
		}
		if !changed && !bytes.Equal(out, in) {
			t.Fatal("unchanged row with other bytes")
		}
		if out[0] != 'D' || int(binary.BigEndian.Uint32(out[1:5])) != len(out)-1 {
			t.Fatalf("bad frame header % x for %d bytes", out[:5], len(out))
		}
		var got pgproto3.DataRow
		if err := got.Decode(out[5:]); err != nil {
			t.Fatalf("masked row does not decode: %v", err)
		}
		if len(got.Values) != n {
			t.Fatalf("masked row has %d values, want %d", len(got.Values), n)
		}
		for i, v := range values {
			if v == nil && got.Values[i] != nil {
				t.Fatalf("NULL in column %d became %q", i, got.Values[i])
			}
		}
		// Arbitrary bytes as a row body: an error or a valid frame.
		if o, _, err := ta.AppendRow(nil, vals); err == nil {
			var r pgproto3.DataRow
			if err := r.Decode(o[5:]); err != nil || len(r.Values) != n {
				t.Fatalf("garbage body passed as %q (%v)", o, err)
			}
		}
	})
}

// FuzzDetect checks that detectors and the masking of free text never
// panic, report spans in order, inside the text, not overlapping, and
// that what MaskText leaves outside the spans is the text itself.
func FuzzDetect(f *testing.F) {
	for _, fx := range secretFixtures {
		f.Add([]byte(fx.inText))
	}
	for _, s := range []string{
		"123e4567-e89b-12d3-a456-426614174000", "2024-01-15 10:30:45.123456+00", "1700000000000",
		"4111111111111112", "DE89370400440532013001", "AKIAIOSFODNN7EXAMPL", "a@b",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\\n\\"))
	f.Add([]byte("eyJhbGciOiJub25lIn0....."))
	f.Add([]byte("password=\"\\"))
	f.Add([]byte("x://a:b@"))
	sessions := fuzzSessions(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range sessions[1:] {
			spans := s.Detect(data)
			last := 0
			for _, sp := range spans {
				if sp.Start < last || sp.End <= sp.Start || sp.End > len(data) || sp.Detector == "" {
					t.Fatalf("bad span %+v after %d in %d bytes", sp, last, len(data))
				}
				last = sp.End
			}
			out, n := s.MaskText(string(data))
			if n != len(spans) {
				t.Fatalf("MaskText masked %d values, Detect found %d", n, len(spans))
			}
			if n == 0 && out != string(data) {
				t.Fatal("MaskText changed text with nothing found")
			}
			if n > 0 && (!bytes.HasPrefix([]byte(out), data[:spans[0].Start]) || !bytes.HasSuffix([]byte(out), data[spans[len(spans)-1].End:])) {
				t.Fatalf("MaskText(%q) = %q changed text outside the spans", data, out)
			}
		}
	})
}

// FuzzMaskCopyLine checks that COPY lines never panic the masker and that
// a masked text-format line still has the plan's number of columns.
func FuzzMaskCopyLine(f *testing.F) {
	f.Add([]byte("1\tjo@ex.com\tnote\n"), false)
	f.Add([]byte("1,\"jo@ex.com\",\"a\"\"b\"\n"), true)
	f.Add([]byte("1\t\\N\t\\x4\\101\n"), false)
	sessions := fuzzSessions(f)
	f.Fuzz(func(t *testing.T, line []byte, csv bool) {
		format := mask.TextCopy()
		if csv {
			format = mask.CSVCopy()
		}
		for _, s := range sessions[1:] {
			p, err := s.PlanFields(copyFields)
			if err != nil {
				t.Fatal(err)
			}
			out, changed, err := p.NewTally().MaskCopyLine(&format, line)
			if err != nil {
				return
			}
			if !changed && !bytes.Equal(out, line) {
				t.Fatal("unchanged line with other bytes")
			}
			if !csv && changed {
				// Count unescaped tabs: the column count must not move.
				cols := 1
				for i := 0; i < len(out); i++ {
					switch out[i] {
					case '\\':
						i++
					case '\t':
						cols++
					}
				}
				if cols != len(copyFields) {
					t.Fatalf("masked %q into %q: %d columns", line, out, cols)
				}
			}
		}
	})
}

// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// benchDesc and benchRow are a 10-column row of a customers table as a
// text-format SELECT returns it: 231 bytes of values, one email, one card
// number, one SSN, the rest ordinary names, numbers, dates and prose.
var (
	benchDesc = desc(
		fd("id", customersOID, 1, int4),
		fd("name", customersOID, 2, text),
		fd("email", customersOID, 3, text),
		fd("card", customersOID, 4, text),
		fd("ssn", customersOID, 5, text),
		fd("city", 0, 0, text),
		fd("created", 0, 0, 1184),
		fd("amount", 0, 0, 1700),
		fd("notes", customersOID, 7, text),
		fd("status", 0, 0, vchar),
	)
	benchRow = row("12345", "Jane Doe", "jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789",
		"Springfield", "2024-01-15 10:30:45.123456+00", "1234.56",
		"Customer asked for a callback next Tuesday about order 98765, reference 2024-01-15/7.", "active")
)

// BenchmarkMaskRow measures what masking costs the relay per row, decode
// and re-encode included (AppendRow, what the relay calls), and MaskRow on
// its own, with no rules, three column rules (email, card, ssn), and every
// detector on every text column.
func BenchmarkMaskRow(b *testing.B) {
	msg := must(benchRow.Encode(nil))
	body := msg[5:]
	for _, bc := range []struct {
		name  string
		rules []policy.Masking
	}{
		{"rules=0", nil},
		{"columns=3", []policy.Masking{{
			ID: "pii", Style: policy.MaskRedact,
			Columns: []string{"public.customers.email", "public.customers.card", "*.*.ssn"},
		}}},
		{"columns=3/hash", []policy.Masking{{
			ID: "pii", Style: policy.MaskHash, HashKeyFile: "/k",
			Columns: []string{"public.customers.email", "public.customers.card", "*.*.ssn"},
		}}},
		{"detectors=all", []policy.Masking{{ID: "all", Detectors: policy.Detectors(), Style: policy.MaskRedact}}},
	} {
		s := newMasker(b, bc.rules...).Session(mask.Subject{})
		p, err := s.Plan(context.Background(), benchDesc, nil, resolver)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/AppendRow", func(b *testing.B) {
			t := p.NewTally()
			out := make([]byte, 0, 1024)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				out, _, err = t.AppendRow(out[:0], body)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/MaskRow", func(b *testing.B) {
			t := p.NewTally()
			var r pgproto3.DataRow
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				// Decoding points the values back at the original bytes.
				if err := r.Decode(body); err != nil {
					b.Fatal(err)
				}
				if _, err := t.MaskRow(&r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlan measures making a plan for the 10-column description with
// three column rules and every detector (the resolver is a map lookup, as
// the relay's cache is).
func BenchmarkPlan(b *testing.B) {
	s := newMasker(b, piiRule, cardRule, secretsRule).Session(mask.Subject{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Plan(context.Background(), benchDesc, nil, resolver); err != nil {
			b.Fatal(err)
		}
	}
}

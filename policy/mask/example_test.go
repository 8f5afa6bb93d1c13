// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// The relay's calls, from the config to a masked DataRow: a Masker per
// target when the config loads, a Session per client session, a Plan per
// RowDescription (kept with the prepared statement), a Tally per result.
func Example() {
	m, err := mask.New([]policy.Masking{
		{ID: "customer-pii", Columns: []string{"public.customers.email"}, Style: policy.MaskRedact},
		{ID: "cards", Detectors: []policy.Detector{policy.DetectorCardNumber}, Style: policy.MaskPartial},
	}, "orders-db", mask.Options{})
	if err != nil {
		panic(err)
	}
	s := m.Session(mask.Subject{Identities: []string{"nightly-report"}})

	// The relay resolves table columns with a cached catalog lookup.
	catalog := mask.ResolverFunc(func(_ context.Context, table uint32, att int16) (mask.Column, error) {
		return mask.Column{Schema: "public", Table: "customers", Name: []string{"", "id", "email", "note"}[att]}, nil
	})
	// SELECT id, email AS e, note FROM customers
	desc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("id"), TableOID: 16500, TableAttributeNumber: 1, DataTypeOID: 23},
		{Name: []byte("e"), TableOID: 16500, TableAttributeNumber: 2, DataTypeOID: 25},
		{Name: []byte("note"), TableOID: 16500, TableAttributeNumber: 3, DataTypeOID: 25},
	}}
	plan, err := s.Plan(context.Background(), desc, nil, catalog)
	if err != nil {
		panic(err) // a *mask.RefuseError becomes SQLSTATE 0A000
	}
	tally := plan.NewTally()
	in, _ := (&pgproto3.DataRow{Values: [][]byte{
		[]byte("7"), []byte("jane@example.com"), []byte("paid with 4111 1111 1111 1111"),
	}}).Encode(nil)
	out, changed, err := tally.AppendRow(nil, in[5:])
	if err != nil {
		panic(err)
	}
	var row pgproto3.DataRow
	if err := row.Decode(out[5:]); err != nil {
		panic(err)
	}
	fmt.Printf("changed=%v %q\n", changed, row.Values)
	fmt.Printf("%+v\n", tally.Counts())
	// Output:
	// changed=true ["7" "[MASKED:customer-pii]" "paid with **** **** **** 1111"]
	// [{Column:public.customers.email Rule:customer-pii Masked:1 Nulled:0 Found:[]} {Column:public.customers.note Rule: Masked:0 Nulled:0 Found:[{Detector:card_number Count:1}]}]
}

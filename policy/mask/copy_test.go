// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"errors"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// copyFields is the column list of COPY customers (id, email, notes) TO
// STDOUT.
var copyFields = []mask.Field{
	{Name: "id", Column: mask.Column{Schema: "public", Table: "customers", Name: "id"}, TypeOID: int4},
	{Name: "email", Column: mask.Column{Schema: "public", Table: "customers", Name: "email"}},
	{Name: "notes", Column: mask.Column{Schema: "public", Table: "customers", Name: "notes"}},
}

func TestMaskCopyLine(t *testing.T) {
	partial := piiRule
	partial.Style = policy.MaskPartial
	s := newMasker(t, partial, secretsRule).Session(mask.Subject{})
	p, err := s.PlanFields(copyFields)
	if err != nil {
		t.Fatal(err)
	}
	text, csv := mask.TextCopy(), mask.CSVCopy()
	csvHeader := csv
	csvHeader.Header = true
	semi := csv
	semi.Delimiter, semi.Escape, semi.Null = ';', '\\', "NULL"
	for _, tt := range []struct {
		name string
		f    mask.CopyFormat
		in   []string
		out  []string
	}{{
		name: "text",
		f:    text,
		in: []string{
			"1\tjo@ex.com\tcall 4111111111111111\n",
			"2\t\\N\t\\N\n",
			"3\ta\\\\b@ex.com\tline\\nand a\\ttab " + fxEmail + "\n",
			"4\tjo\\x40ex.com\t\\101\\102\n",
			"5\tx\tnothing\r\n",
		},
		out: []string{
			"1\t**@**.com\tcall [MASKED:card_number]\n",
			"2\t\\N\t\\N\n",
			"3\t**@**.com\tline\\nand a\\ttab [MASKED:email]\n",
			"4\t**@**.com\t\\101\\102\n",
			"5\t*\tnothing\r\n",
		},
	}, {
		name: "csv",
		f:    csvHeader,
		in: []string{
			"id,email,notes\n",
			"1,jo@ex.com,\"a, \"\"quoted\"\" " + fxEmail + "\"\n",
			"2,,\"\"\n",
			"3,\"multi\nline@ex.com\",\"pwd=x\r\n\"\r\n",
		},
		out: []string{
			"id,email,notes\n",
			"1,\"**@**.com\",\"a, \"\"quoted\"\" [MASKED:email]\"\n",
			"2,,\"\"\n",
			"3,\"**********@**.com\",\"pwd=[MASKED:password]\r\n\"\r\n",
		},
	}, {
		name: "csv options",
		f:    semi,
		in:   []string{"1;\"j\\\"o@ex.com\";NULL\n", "2;NULL;\"x;y\"\n"},
		out:  []string{"1;\"***@**.com\";NULL\n", "2;NULL;\"x;y\"\n"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			ta := p.NewTally()
			for i, in := range tt.in {
				out, changed, err := ta.MaskCopyLine(&tt.f, []byte(in))
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if string(out) != tt.out[i] {
					t.Errorf("line %d:\n got %q\nwant %q", i, out, tt.out[i])
				}
				if changed != (in != tt.out[i]) {
					t.Errorf("line %d: changed = %v", i, changed)
				}
			}
		})
	}
}

func TestMaskCopyLineErrors(t *testing.T) {
	s := newMasker(t, piiRule).Session(mask.Subject{})
	p, err := s.PlanFields(copyFields)
	if err != nil {
		t.Fatal(err)
	}
	text, csv := mask.TextCopy(), mask.CSVCopy()
	for _, tt := range []struct {
		f    mask.CopyFormat
		line string
		is   error
	}{
		{text, "1\ta@b.com\tx", mask.ErrCopyLine},
		{text, "1\ta@b.com\n", mask.ErrColumnCount},
		{text, "1\ta\tb\tc\n", mask.ErrColumnCount},
		{text, "1\ta\tb\\\n", mask.ErrCopyLine},
		{csv, "1,\"a@b.com,x\n", mask.ErrCopyLine},
		{csv, "1,\"a\"b,x\n", mask.ErrCopyLine},
	} {
		if _, _, err := p.NewTally().MaskCopyLine(&tt.f, []byte(tt.line)); !errors.Is(err, tt.is) {
			t.Errorf("%q: err = %v, want %v", tt.line, err, tt.is)
		}
	}
	bad := mask.CopyFormat{}
	if _, _, err := p.NewTally().MaskCopyLine(&bad, []byte("x\n")); err == nil {
		t.Error("a zero CopyFormat is accepted")
	}
}

func TestBinaryCopy(t *testing.T) {
	s := newMasker(t, piiRule).Session(mask.Subject{})
	p, err := s.PlanFields(copyFields)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.BinaryCopy(); !errors.Is(err, mask.ErrRefused) {
		t.Errorf("BinaryCopy = %v", err)
	}
	p, err = s.PlanFields(copyFields[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := p.BinaryCopy(); err != nil {
		t.Errorf("BinaryCopy of unmasked columns = %v", err)
	}
}

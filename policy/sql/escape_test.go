// SPDX-License-Identifier: Apache-2.0

package sql_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// TestEscapeStrings: plain literals are read with backslash escapes, as a
// server with standard_conforming_strings off reads them; nothing else
// changes.
func TestEscapeStrings(t *testing.T) {
	cases := []struct{ in, want string }{
		{`SELECT 'a'`, `SELECT 'a'`}, // no backslash: unchanged
		{`SELECT 'a\'b'`, `SELECT E'a\'b'`},
		{`SELECT 'a\\', 'b'`, `SELECT E'a\\', E'b'`},
		{`SELECT E'a\'b', e'\\'`, `SELECT E'a\'b', e'\\'`},
		{`SELECT B'101', X'1F', 'x\'`, `SELECT B'101', X'1F', E'x\'`},
		{"SELECT 'a\\'\n'b'", "SELECT E'a\\'\n'b'"}, // continuation keeps the first segment's reading
		{`SELECT "we'ird\" FROM t WHERE x = '\'`, `SELECT "we'ird\" FROM t WHERE x = E'\'`},
		{`SELECT $$a\'$$, $t$'\'$t$, $1, 'x\'`, `SELECT $$a\'$$, $t$'\'$t$, $1, E'x\'`},
		{"SELECT 1 -- it's \\\nFROM t WHERE a = '\\'", "SELECT 1 -- it's \\\nFROM t WHERE a = E'\\'"},
		{`SELECT /* it's /* nested */ \ */ 'a\'`, `SELECT /* it's /* nested */ \ */ E'a\'`},
		{`SELECT abe'x\'`, `SELECT abe E'x\'`},
		{`SELECT int4'5\'`, `SELECT int4 E'5\'`},
		{`SELECT U&'\0041', 'x\'`, `SELECT U&'\0041', E'x\'`},
	}
	for _, tc := range cases {
		got, err := sql.EscapeStrings(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := sql.EscapeStrings(`SELECT N'a\'b'`); !errors.Is(err, sql.ErrEscapes) {
		t.Errorf("national string with a backslash: %v", err)
	}
}

// TestEscapeStringsReading: the statement a server with the setting off
// runs is what classification of the rewritten text sees. Read with the
// setting on, the text is a harmless SELECT; off, it drops a table.
func TestEscapeStringsReading(t *testing.T) {
	c := sql.New(sql.Options{})
	text := `SELECT 'a\', $$'; DROP TABLE t; --$$`
	if on := c.Classify(text); on.Err != nil || !slices.Equal(on.Classes, []policy.Class{policy.ClassSelect}) {
		t.Fatalf("on: %+v", on)
	}
	conv, err := sql.EscapeStrings(text)
	if err != nil {
		t.Fatal(err)
	}
	off := c.Classify(conv)
	if off.Err != nil || !slices.Contains(off.Classes, policy.ClassDDL) || !slices.Contains(off.Tables, "t") {
		t.Fatalf("off: %q %+v", conv, off)
	}
}

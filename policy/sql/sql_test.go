// SPDX-License-Identifier: Apache-2.0

package sql_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

func TestClassify(t *testing.T) {
	c := sql.New(sql.Options{})
	cases := []struct {
		in      string
		text    string
		classes []policy.Class
		tables  []string
	}{
		{"SELECT * FROM orders WHERE id = 42", "SELECT * FROM orders WHERE id = $1", cl(policy.ClassSelect), []string{"orders"}},
		{"select a from s.t join u on t.x = u.y where u.name = 'bob'", "select a from s.t join u on t.x = u.y where u.name = $1", cl(policy.ClassSelect), []string{"s.t", "u"}},
		{"INSERT INTO t VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = 'y'", "INSERT INTO t VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = $3", cl(policy.ClassInsert, policy.ClassUpdate), []string{"t"}},
		{"UPDATE t SET a = 1", "UPDATE t SET a = $1", cl(policy.ClassUpdate, policy.ClassUpdateWithoutWhere), []string{"t"}},
		{"UPDATE t SET a = 1 WHERE b = 2", "UPDATE t SET a = $1 WHERE b = $2", cl(policy.ClassUpdate), []string{"t"}},
		{"DELETE FROM t", "DELETE FROM t", cl(policy.ClassDelete, policy.ClassDeleteWithoutWhere), []string{"t"}},
		{"DELETE FROM t WHERE id = $1", "DELETE FROM t WHERE id = $1", cl(policy.ClassDelete), []string{"t"}},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", cl(policy.ClassSelect, policy.ClassDelete, policy.ClassDeleteWithoutWhere), []string{"t"}},
		{"CREATE TABLE x (a int DEFAULT 5)", "CREATE TABLE x (a int DEFAULT $1)", cl(policy.ClassDDL), []string{"x"}},
		{"SELECT 1 INTO y", "SELECT $1 INTO y", cl(policy.ClassSelect, policy.ClassDDL), []string{"y"}},
		{"TRUNCATE t", "TRUNCATE t", cl(policy.ClassTruncate), []string{"t"}},
		{"GRANT SELECT ON t TO bob", "GRANT SELECT ON t TO bob", cl(policy.ClassGrant), []string{"t"}},
		{"ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD $1", cl(policy.ClassGrant), nil},
		{"COPY t FROM STDIN", "COPY t FROM STDIN", cl(policy.ClassCopyIn, policy.ClassCopy), []string{"t"}},
		{"COPY (SELECT * FROM t) TO STDOUT", "COPY (SELECT * FROM t) TO STDOUT", cl(policy.ClassSelect, policy.ClassCopyOut, policy.ClassCopy), []string{"t"}},
		{"COPY t TO PROGRAM 'rm -rf /'", "COPY t TO PROGRAM $1", cl(policy.ClassCopyOut, policy.ClassCopy, policy.ClassFunctionCall), []string{"t"}},
		{"BEGIN", "BEGIN", cl(policy.ClassTransaction), nil},
		{"SET search_path = 'abc'", "SET search_path = $1", cl(policy.ClassSet), nil},
		{"DO $$BEGIN RAISE NOTICE 'secret'; END$$", "DO $1", cl(policy.ClassFunctionCall), nil},
		{"NOTIFY chan, 'payload'", "NOTIFY chan, $1", cl(policy.ClassFunctionCall), nil},
		{"LISTEN chan", "LISTEN chan", cl(policy.ClassSet), nil},
		{"VACUUM ANALYZE t", "VACUUM ANALYZE t", cl(policy.ClassDDL), []string{"t"}},
		{"EXECUTE p(1)", "EXECUTE p($1)", cl(policy.ClassUnknown), nil},
		// Functions with effects beyond reading, even from a SELECT.
		{"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'x'", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", cl(policy.ClassSelect, policy.ClassFunctionCall), []string{"pg_stat_activity"}},
		{"SELECT nextval('orders_id_seq')", "SELECT nextval($1)", cl(policy.ClassSelect, policy.ClassFunctionCall), nil},
		{"SELECT * FROM t WHERE a IN (SELECT pg_catalog.set_config('role', 'admin', false))", "SELECT * FROM t WHERE a IN (SELECT pg_catalog.set_config($1, $2, false))", cl(policy.ClassSelect, policy.ClassFunctionCall), []string{"t"}},
		{"SELECT * FROM query_to_xml('DELETE FROM t', true, true, '')", "SELECT * FROM query_to_xml($1, true, true, $2)", cl(policy.ClassSelect, policy.ClassFunctionCall), nil},
		{"SELECT count(*), upper(name), now() FROM t", "SELECT count(*), upper(name), now() FROM t", cl(policy.ClassSelect), []string{"t"}},
		{"SELECT app.nextval(1)", "SELECT app.nextval($1)", cl(policy.ClassSelect), nil},
		{"BEGIN; UPDATE t SET a = a + -5 WHERE id = 7; END;", "BEGIN; UPDATE t SET a = a + -$1 WHERE id = $2; END;", cl(policy.ClassUpdate, policy.ClassTransaction, policy.ClassMultiStatement), []string{"t"}},
		{"select $1::text, $3, 'x' /* token=abc */ -- and 'y'", "select $1::text, $3, $4", cl(policy.ClassSelect), nil},
		{"SELECT E'\\x41', B'101', X'ff', 1.5e3, U&'d\\0061t'", "SELECT $1, $2, $3, $4, $5", cl(policy.ClassSelect), nil},
	}
	for _, tc := range cases {
		st := c.Classify(tc.in)
		if st.Err != nil {
			t.Errorf("%q: %v", tc.in, st.Err)
		}
		if st.Text != tc.text {
			t.Errorf("%q: text %q, want %q", tc.in, st.Text, tc.text)
		}
		if !slices.Equal(st.Classes, tc.classes) {
			t.Errorf("%q: classes %v, want %v", tc.in, st.Classes, tc.classes)
		}
		if !slices.Equal(st.Tables, tc.tables) {
			t.Errorf("%q: tables %v, want %v", tc.in, st.Tables, tc.tables)
		}
		if len(st.Fingerprint) != 16 {
			t.Errorf("%q: fingerprint %q", tc.in, st.Fingerprint)
		}
	}
}

func cl(cs ...policy.Class) []policy.Class { return cs }

// TestFingerprintIgnoresLiterals: texts differing only in literals share
// a fingerprint (so the log can group them), different statements do not.
func TestFingerprintIgnoresLiterals(t *testing.T) {
	c := sql.New(sql.Options{CacheSize: -1})
	a := c.Classify("SELECT * FROM t WHERE id = 1")
	b := c.Classify("select * from t where id=$1")
	d := c.Classify("SELECT * FROM t WHERE id = 2 AND x = 'y'")
	if a.Fingerprint != b.Fingerprint || a.Fingerprint == "" {
		t.Fatalf("fingerprints %q and %q differ", a.Fingerprint, b.Fingerprint)
	}
	if a.Fingerprint == d.Fingerprint {
		t.Fatalf("different statements share fingerprint %q", a.Fingerprint)
	}
	// For utility statements the fingerprint is taken from the
	// normalised text, so it does not depend on (and cannot reveal) the
	// secret.
	p1 := c.Classify("ALTER ROLE bob PASSWORD 'one'")
	p2 := c.Classify("ALTER ROLE bob PASSWORD 'two'")
	if p1.Fingerprint != p2.Fingerprint {
		t.Fatalf("password fingerprints differ: %q %q", p1.Fingerprint, p2.Fingerprint)
	}
}

func TestUnparsed(t *testing.T) {
	c := sql.New(sql.Options{})
	st := c.Classify("SELECT 'secret' FROM WHERE")
	if !errors.Is(st.Err, sql.ErrUnparsed) {
		t.Fatalf("err %v", st.Err)
	}
	if st.Text != "SELECT $1 FROM WHERE" || !slices.Equal(st.Classes, cl(policy.ClassUnknown)) {
		t.Fatalf("got %+v", st)
	}
	if strings.Contains(st.Err.Error(), "secret") {
		t.Fatalf("error quotes the text: %v", st.Err)
	}
	st = c.Classify("SELECT 'unterminated secret")
	if !st.Withheld || st.Text != "" || !errors.Is(st.Err, sql.ErrUnparsed) {
		t.Fatalf("unlexable text not withheld: %+v", st)
	}
}

func TestTruncate(t *testing.T) {
	c := sql.New(sql.Options{})
	long := "SELECT " + strings.Repeat("a_column_name, ", sql.MaxText/10) + "1"
	st := c.Classify(long)
	if !st.Truncated || len(st.Text) > sql.MaxText {
		t.Fatalf("truncated %v, len %d", st.Truncated, len(st.Text))
	}
	big := "INSERT INTO t VALUES ('" + strings.Repeat("x", 8<<20) + "')"
	st = c.Classify(big)
	if st.Text != "INSERT INTO t VALUES ($1)" || st.Truncated {
		t.Fatalf("big literal: %q", st.Text)
	}
}

// TestCacheSharesClassification checks that cached results are the same
// as fresh ones.
func TestCacheSharesClassification(t *testing.T) {
	cached := sql.New(sql.Options{CacheSize: 4})
	fresh := sql.New(sql.Options{CacheSize: -1})
	for i := 0; i < 3; i++ {
		for _, q := range []string{"SELECT 1", "SELECT 2", "UPDATE t SET a = 1", "SELECT * FROM x WHERE y = 'z'", "DELETE FROM t", "BEGIN"} {
			a, b := cached.Classify(q), fresh.Classify(q)
			if a.Text != b.Text || a.Fingerprint != b.Fingerprint || !slices.Equal(a.Classes, b.Classes) {
				t.Fatalf("%q: cached %+v, fresh %+v", q, a, b)
			}
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct{ name, q string }{
		{"select-repeated", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
		{"update-literals", "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d;"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := sql.New(sql.Options{})
			qs := make([]string, 1000)
			for i := range qs {
				qs[i] = strings.ReplaceAll(strings.ReplaceAll(bc.q, "%d", string(rune('0'+i%10))+"12"), "12", itoa(i))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Classify(qs[i%len(qs)])
			}
		})
	}
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

// TestParts: each statement of a multi-statement text is described on its
// own, so a DROP hidden after a SELECT is judged with its own table, and a
// semicolon inside a literal or a dollar quote does not split.
func TestParts(t *testing.T) {
	c := sql.New(sql.Options{})
	st := c.Classify("SELECT * FROM a; DROP TABLE b; DELETE FROM c WHERE x = ';'")
	want := []sql.Part{
		{Classes: cl(policy.ClassSelect), Tables: []string{"a"}},
		{Classes: cl(policy.ClassDDL), Tables: []string{"b"}},
		{Classes: cl(policy.ClassDelete), Tables: []string{"c"}},
	}
	if st.Count != 3 || len(st.Parts) != len(want) {
		t.Fatalf("count %d, parts %+v", st.Count, st.Parts)
	}
	for i, p := range st.Parts {
		if !slices.Equal(p.Classes, want[i].Classes) || !slices.Equal(p.Tables, want[i].Tables) {
			t.Errorf("part %d: %+v, want %+v", i, p, want[i])
		}
	}
	if one := c.Classify("SELECT $$;DROP TABLE x;$$"); one.Count != 1 || one.Parts != nil {
		t.Fatalf("dollar quote split: %+v", one)
	}
}

// TestClassifyEmptyAndPrepared: texts with no statement are class empty;
// PREPARE, EXECUTE, DEALLOCATE and DISCARD ALL say what they do to the
// session's prepared statements.
func TestClassifyEmptyAndPrepared(t *testing.T) {
	c := sql.New(sql.Options{})
	for _, in := range []string{"", ";", " ; ; ", "-- ping", "--;", "/* x */", "/* a */ -- b\n;"} {
		st := c.Classify(in)
		if st.Err != nil || !slices.Equal(st.Classes, cl(policy.ClassEmpty)) || st.Count != 0 {
			t.Errorf("%q: %+v", in, st)
		}
	}
	cases := []struct {
		in   string
		op   sql.PreparedOp
		cls  []policy.Class
		tabs []string
	}{
		{"PREPARE p AS DELETE FROM t WHERE id = $1", sql.PreparedOp{Kind: sql.Prepare, Name: "p"}, cl(policy.ClassDelete), []string{"t"}},
		{"EXECUTE P(7)", sql.PreparedOp{Kind: sql.Execute, Name: "p"}, cl(policy.ClassUnknown), nil},
		{`EXECUTE "P"`, sql.PreparedOp{Kind: sql.Execute, Name: "P"}, cl(policy.ClassUnknown), nil},
		{"EXPLAIN ANALYZE EXECUTE p(1)", sql.PreparedOp{Kind: sql.Execute, Name: "p"}, cl(policy.ClassUnknown), nil},
		{"CREATE TABLE x AS EXECUTE p(1)", sql.PreparedOp{Kind: sql.Execute, Name: "p"}, cl(policy.ClassDDL, policy.ClassUnknown), []string{"x"}},
		{"DEALLOCATE p", sql.PreparedOp{Kind: sql.Deallocate, Name: "p"}, cl(policy.ClassSet), nil},
		{"DEALLOCATE ALL", sql.PreparedOp{Kind: sql.DeallocateAll}, cl(policy.ClassSet), nil},
		{"DISCARD ALL", sql.PreparedOp{Kind: sql.DeallocateAll}, cl(policy.ClassSet), nil},
		{"DISCARD PLANS", sql.PreparedOp{}, cl(policy.ClassSet), nil},
	}
	for _, tc := range cases {
		st := c.Classify(tc.in)
		if st.Prepared != tc.op || !slices.Equal(st.Classes, tc.cls) || !slices.Equal(st.Tables, tc.tabs) {
			t.Errorf("%q: %+v", tc.in, st)
		}
		if st.Executes() != (tc.op.Kind == sql.Execute) {
			t.Errorf("%q: Executes %v", tc.in, st.Executes())
		}
	}
	st := c.Classify("PREPARE q AS SELECT 1; EXECUTE q")
	if len(st.Parts) != 2 || st.Parts[0].Prepared.Kind != sql.Prepare || st.Parts[1].Prepared != (sql.PreparedOp{Kind: sql.Execute, Name: "q"}) || !st.Executes() {
		t.Errorf("parts: %+v", st)
	}
}

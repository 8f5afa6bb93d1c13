// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// maskingYAML is the masking config of the e2e tests: column rules on the
// customers table (OID-resolved, so aliases and SELECT * cannot bypass
// them), value detectors and a custom pattern everywhere, a refusing rule
// on an int column and a nullifying one.
const maskingYAML = `rules:
  - id: allow-all
    action: allow
masking:
  - id: customer-pii
    targets: [pg]
    columns: ["public.customers.email", "public.customers.card", "public.customers.ssn"]
    style: redact
  - id: secrets
    detectors: [email, card_number, iban, aws_access_key]
    patterns: [{name: ssn, regex: '\b\d{3}-\d{2}-\d{4}\b'}]
    style: redact
  - id: acct-pin
    columns: ["public.accounts.pin"]
    style: redact
  - id: acct-score
    columns: ["public.accounts.score"]
    style: redact
    binary: nullify
`

// maskFixture is the customers fixture and the values that must never
// leave unmasked.
type maskFixture struct {
	sql     string
	secrets []string
}

func luhn(prefix string) string {
	sum := 0
	for i := range prefix {
		d := int(prefix[len(prefix)-1-i] - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return prefix + string(rune('0'+(10-sum%10)%10))
}

func iban(bban string) string {
	n, _ := new(big.Int).SetString(bban+"131400", 10) // DE00
	mod := new(big.Int).Mod(n, big.NewInt(97)).Int64()
	return fmt.Sprintf("DE%02d%s", 98-mod, bban)
}

func newMaskFixture(rows int) maskFixture {
	var b strings.Builder
	b.WriteString(`CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, card text, iban text,
  profile jsonb, ssn text, note text);
CREATE TABLE accounts (id int PRIMARY KEY, pin int, score int, note text);
INSERT INTO accounts SELECT i, 1000 + i, 50 + i, 'account ' || i FROM generate_series(1, 5) i;
CREATE VIEW v_customers AS SELECT id, name, email AS contact, card FROM customers;
CREATE OR REPLACE FUNCTION card_of(int) RETURNS text LANGUAGE sql AS 'SELECT card FROM customers WHERE id = $1';
`)
	var f maskFixture
	for i := 1; i <= rows; i++ {
		email := fmt.Sprintf("customer%02d@example.com", i)
		card := luhn(fmt.Sprintf("411111%09d", 100000000+i))
		ib := iban(fmt.Sprintf("3704004405320130%02d", i))
		key := fmt.Sprintf("AKIAQWERTYUIOP%06d", 100000+i)
		ssn := fmt.Sprintf("123-45-%04d", 6700+i)
		fmt.Fprintf(&b, "INSERT INTO customers VALUES (%d, 'name %d', '%s', '%s', '%s', '{\"plan\": \"gold\", \"api_key\": \"%s\"}', '%s', 'note %d');\n",
			i, i, email, card, ib, key, ssn, i)
		f.secrets = append(f.secrets, email, card, ib, key, ssn)
	}
	f.sql = b.String()
	return f
}

// maskSetup is a daemon with masking rules in front of a cluster holding
// the fixture in two databases: d_<name> read directly, p_<name> through
// tollgate.
type maskSetup struct {
	*pgSetup
	fx maskFixture
}

func newMaskSetup(t *testing.T, dbs ...string) *maskSetup {
	t.Helper()
	s := &maskSetup{pgSetup: newPGSetup(t, "process", maskingYAML), fx: newMaskFixture(20)}
	for _, db := range dbs {
		for _, p := range []string{"d_", "p_"} {
			s.createDB(t, p+db)
			s.pg.psqlSuper(t, p+db, "SET ROLE "+pgScramUser+";\n"+s.fx.sql)
		}
	}
	return s
}

// noSecrets fails the test if any fixture secret is in text.
func (s *maskSetup) noSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, sec := range s.fx.secrets {
		if strings.Contains(text, sec) {
			t.Errorf("%s holds the raw value %q", where, sec)
		}
	}
}

// someSecrets fails the test unless text holds fixture secrets: the
// direct run must see them, or the test proves nothing.
func (s *maskSetup) someSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, sec := range s.fx.secrets {
		if strings.Contains(text, sec) {
			return
		}
	}
	t.Errorf("%s holds no fixture value: the test would not see a leak", where)
}

// tagged returns the lines of out that start with tag.
func tagged(out, tag string) []string {
	var l []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, tag) {
			l = append(l, line)
		}
	}
	return l
}

// compareUnmasked checks that direct and proxied runs agree on every
// line without masked values, that the proxied run's masked lines are as
// many as the direct run's (same rows), and that no secret got through.
func (s *maskSetup) compareUnmasked(t *testing.T, name, direct, through string) {
	t.Helper()
	s.someSecrets(t, name+" direct output", direct)
	s.noSecrets(t, name+" output through tollgate", through)
	du, pu := tagged(direct, "U:"), tagged(through, "U:")
	if strings.Join(du, "\n") != strings.Join(pu, "\n") {
		t.Errorf("%s: unmasked lines differ\ndirect:\n%s\nthrough tollgate:\n%s", name, strings.Join(du, "\n"), strings.Join(pu, "\n"))
	}
	// A refusal (R:) stands where the direct run has a masked line.
	dm := append(tagged(direct, "M:"), tagged(direct, "R:")...)
	pm := append(tagged(through, "M:"), tagged(through, "R:")...)
	if len(dm) != len(pm) {
		t.Errorf("%s: %d masked lines direct, %d through tollgate", name, len(dm), len(pm))
	}
	if len(du) == 0 || len(dm) == 0 {
		t.Errorf("%s: no output to compare:\n%s", name, direct)
	}
}

// checkLogs checks the daemon's records, its log file and its output for
// raw values; it returns the result records.
func (s *maskSetup) checkLogs(t *testing.T) []*audit.Record {
	t.Helper()
	recs := s.d.records()
	raw, err := os.ReadFile(s.d.cfg.StateDir + "/audit.db")
	if err != nil {
		t.Fatal(err)
	}
	s.noSecrets(t, "the audit log file", string(raw))
	s.noSecrets(t, "the daemon's output", s.d.stderr.String())
	var results []*audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindResult {
			results = append(results, r)
		}
	}
	return results
}

func maskedTotal(results []*audit.Record) int {
	total := 0
	for _, r := range results {
		var n int
		fmt.Sscan(r.Detail["masked"], &n)
		total += n
	}
	return total
}

// TestMaskingPgx: pgx in every query mode (cached prepared statements
// executed many times without a new Describe, describe-exec, exec, simple
// protocol, binary results, a batch) and COPY TO STDOUT in text and CSV:
// no raw value reaches the client, the log or the daemon's output, while
// the unmasked columns and row counts equal the direct run's. A binary
// COPY and an int column under a refusing rule are refused with 0A000
// and the session stays usable; inside a transaction the refusal closes
// the session so the transaction cannot commit.
func TestMaskingPgx(t *testing.T) {
	s := newMaskSetup(t, "pgx")
	bin := maskclientBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dOut, dErr, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + pgScramPass}, "", bin, s.pg.dsn(pgScramUser, "d_pgx"))
	if err != nil {
		t.Fatalf("direct: %v\n%s\n%s", err, dOut, dErr)
	}
	pOut, pErr, err := runClient(t, ctx, s.cgroup, nil, "", bin, s.pg.dsn(pgScramUser, "p_pgx"))
	if err != nil {
		t.Fatalf("through tollgate: %v\n%s\n%s\ndaemon:\n%s", err, pOut, pErr, s.d.stderr.String())
	}
	if testing.Verbose() {
		t.Logf("through tollgate:\n%s", pOut)
	}
	s.compareUnmasked(t, "pgx", dOut, pOut)
	for _, want := range []string{"M: cached 5 1 [MASKED:customer-pii] [MASKED:customer-pii] [MASKED:iban]",
		"M: binary 2 1 [MASKED:customer-pii]", `"api_key": "[MASKED:aws_access_key]"`,
		"R: binary copy 0A000", "R: pin 0A000", "M: score NULL", "R: pin in tx 0A000", "X: commit after refusal failed true",
		"M: copy 1\tname 1\t[MASKED:customer-pii]\t[MASKED:customer-pii]"} {
		if !strings.Contains(pOut, want) {
			t.Errorf("through tollgate, output lacks %q", want)
		}
	}
	if n := strings.Count(pOut, "R: pin 0A000"); n != 2 {
		t.Errorf("%d pin refusals, want 2 (simple and extended)", n)
	}
	// The refused transaction's update did not commit.
	if got := s.pg.psqlSuper(t, "p_pgx", "SELECT note FROM accounts WHERE id = 3"); !strings.Contains(got, "account 3") {
		t.Errorf("the transaction with a refused result committed: %q", got)
	}
	results := s.checkLogs(t)
	if maskedTotal(results) == 0 {
		t.Error("no result record counts masked values")
	}
	refused := 0
	for _, r := range results {
		if r.Detail["masking_refused"] != "" {
			refused++
			if r.Detail["sqlstate"] != "0A000" {
				t.Errorf("refused result without 0A000: %+v", r.Detail)
			}
		}
		if c := r.Detail["masked_columns"]; c != "" && !strings.Contains(c, `"column":`) {
			t.Errorf("masked_columns %q", c)
		}
	}
	if refused < 4 {
		t.Errorf("%d refused results recorded, want at least 4", refused)
	}
	// Bind parameters of statements on the customers table are in the
	// log, redacted (a parameter may be a masked column's value).
	params := 0
	for _, r := range executions(s.d.records()) {
		if v := r.Detail["param_values"]; v != "" {
			params++
			if strings.Contains(strings.Join(r.Statement.Tables, ","), "customers") && v != "[MASKED:customer-pii]" {
				t.Errorf("parameters of %q recorded as %q", r.Statement.Text, v)
			}
		}
	}
	if params == 0 {
		t.Error("no statement record shows its bind parameters")
	}
}

// TestMaskingPsql: psql reads the fixture by aliases, SELECT *, a view,
// a CTE, derived expressions, RETURNING and COPY TO STDOUT; a unique
// violation echoing a key, RAISE NOTICE and NOTIFY with secrets: nothing
// raw reaches psql, the log or the daemon's output.
func TestMaskingPsql(t *testing.T) {
	s := newMaskSetup(t, "psql")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := `\pset footer on
SELECT id, name, email AS e, card AS "Card" FROM customers ORDER BY id LIMIT 3;
SELECT * FROM customers ORDER BY id LIMIT 3;
SELECT * FROM v_customers ORDER BY id LIMIT 3;
WITH c AS (SELECT id, email, ssn FROM customers) SELECT * FROM c ORDER BY id LIMIT 3;
SELECT id, upper(email), card || '', ssn || '', profile->>'api_key', iban, card_of(id) FROM customers ORDER BY id LIMIT 3;
SELECT (SELECT email FROM customers WHERE id = 4) AS sub;
INSERT INTO customers (id, name, email, card, ssn) VALUES (1001, 'new', 'fresh@example.org', '4012888888881881', '999-88-7777') RETURNING *;
UPDATE customers SET name = 'renamed' WHERE id = 5 RETURNING id, name, email, ssn;
INSERT INTO customers (id, email) VALUES (1002, 'customer01@example.com');
DO $$BEGIN RAISE NOTICE 'card on file: %', (SELECT card FROM customers WHERE id = 6); END$$;
DO $$BEGIN RAISE EXCEPTION 'bad customer %', (SELECT iban FROM customers WHERE id = 7); END$$;
SELECT (SELECT ssn FROM customers WHERE id = 8)::int;
LISTEN ch;
SELECT pg_notify('ch', (SELECT email || ' ' || card FROM customers WHERE id = 9));
COPY customers (id, name, email, card, ssn) TO STDOUT;
COPY (SELECT id, email, iban FROM customers WHERE id < 4 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
SELECT count(*), count(email) FROM customers;
`
	psql := func(through bool, db string) (string, string, error) {
		cg, env := "", []string{"PGPASSWORD=" + pgScramPass}
		if through {
			cg, env = s.cgroup, nil
		}
		return runClient(t, ctx, cg, env, script, "psql", "-X", "-v", "ON_ERROR_STOP=0", "-d", s.pg.dsn(pgScramUser, db))
	}
	dOut, dErr, _ := psql(false, "d_psql")
	pOut, pErr, err := psql(true, "p_psql")
	if err != nil {
		t.Fatalf("psql through tollgate: %v\n%s\n%s", err, pOut, pErr)
	}
	if testing.Verbose() {
		t.Logf("through tollgate:\n%s\n%s", pOut, pErr)
	}
	s.someSecrets(t, "direct psql", dOut+dErr)
	s.noSecrets(t, "psql output through tollgate", pOut+pErr)
	for _, want := range []string{"[MASKED:customer-pii]", "[MASKED:email]", "[MASKED:card_number]", "[MASKED:iban]",
		"[MASKED:ssn]", "[MASKED:aws_access_key]", "name 1", "renamed", "DETAIL:  [MASKED:customer-pii]",
		`invalid input syntax for type integer: "[MASKED:ssn]"`} {
		if !strings.Contains(pOut+pErr, want) {
			t.Errorf("through tollgate, psql output lacks %q", want)
		}
	}
	if strings.Contains(pOut+pErr, "fresh@example.org") || strings.Contains(pOut+pErr, "999-88-7777") {
		t.Error("RETURNING leaked the inserted values")
	}
	for _, want := range []string{"duplicate key value violates unique constraint", "NOTICE:  card on file: [MASKED:card_number]",
		"bad customer [MASKED:iban]", `Asynchronous notification "ch" with payload "[MASKED:email] [MASKED:card_number]"`} {
		if !strings.Contains(pErr+pOut, want) {
			t.Errorf("through tollgate, psql lacks %q", want)
		}
	}
	// Row counts are the same directly and through tollgate.
	if dn, pn := strings.Count(dOut, " rows)")+strings.Count(dOut, " row)"), strings.Count(pOut, " rows)")+strings.Count(pOut, " row)"); dn != pn {
		t.Errorf("%d results direct, %d through tollgate", dn, pn)
	}
	if !strings.Contains(dOut, "21 |    21") || !strings.Contains(pOut, "21 |    21") {
		t.Errorf("counts differ:\ndirect:\n%s\nthrough:\n%s", dOut, pOut)
	}
	results := s.checkLogs(t)
	if maskedTotal(results) == 0 {
		t.Error("no result record counts masked values")
	}
}

// TestMaskingPsycopg: psycopg, plain, server-side prepared, binary and
// COPY TO STDOUT.
func TestMaskingPsycopg(t *testing.T) {
	if _, err := os.Stat(python3); err != nil {
		t.Fatalf("no %s", python3)
	}
	s := newMaskSetup(t, "py")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dOut, dErr, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + pgScramPass}, "", python3, "testdata/pg/mask.py", s.pg.dsn(pgScramUser, "d_py"))
	if err != nil {
		t.Fatalf("direct: %v\n%s", err, dErr)
	}
	pOut, pErr, err := runClient(t, ctx, s.cgroup, nil, "", python3, "testdata/pg/mask.py", s.pg.dsn(pgScramUser, "p_py"))
	if err != nil {
		t.Fatalf("through tollgate: %v\n%s\n%s\ndaemon:\n%s", err, pOut, pErr, s.d.stderr.String())
	}
	if testing.Verbose() {
		t.Logf("through tollgate:\n%s", pOut)
	}
	s.compareUnmasked(t, "psycopg", dOut, pOut)
	for _, want := range []string{"M: prepared [MASKED:customer-pii] [MASKED:customer-pii] [MASKED:iban]",
		"M: binary [MASKED:customer-pii]", "M: copy [MASKED:customer-pii] [MASKED:customer-pii]"} {
		if !strings.Contains(pOut, want) {
			t.Errorf("through tollgate, output lacks %q", want)
		}
	}
	s.checkLogs(t)
}

var (
	maskclientOnce sync.Once
	maskclientPath string
	maskclientErr  error
)

// maskclientBin builds testdata/maskclient once per run.
func maskclientBin(t testing.TB) string {
	t.Helper()
	maskclientOnce.Do(func() {
		maskclientPath = filepath.Join(filepath.Dir(tollgateBin), "maskclient")
		out, err := exec.Command("go", "build", "-o", maskclientPath, "./testdata/maskclient").CombinedOutput()
		if err != nil {
			maskclientErr = fmt.Errorf("build maskclient: %v\n%s", err, out)
		}
	})
	if maskclientErr != nil {
		t.Fatal(maskclientErr)
	}
	return maskclientPath
}

// TestMaskingExempt: an identity exempt from a masking entry sees what
// that entry hides (the other entries still apply), and its session.start
// record says which entry it is exempt from, and why.
func TestMaskingExempt(t *testing.T) {
	requireRoot(t)
	yaml := "identities:\n  - name: dba\n    process: {uid: 0}\n" + strings.Replace(maskingYAML,
		"    columns: [\"public.customers.email\", \"public.customers.card\", \"public.customers.ssn\"]\n    style: redact\n",
		"    columns: [\"public.customers.email\", \"public.customers.card\", \"public.customers.ssn\"]\n    style: redact\n    exempt: [dba]\n", 1)
	s := &maskSetup{pgSetup: newPGSetup(t, "process", yaml), fx: newMaskFixture(5)}
	s.createDB(t, "p_ex")
	s.pg.psqlSuper(t, "p_ex", "SET ROLE "+pgScramUser+";\n"+s.fx.sql)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", "psql", "-X", "-At", "-d", s.pg.dsn(pgScramUser, "p_ex"),
		"-c", "SELECT email, ssn FROM customers WHERE id = 1")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, errOut)
	}
	// The column rule does not apply; the email detector and the ssn
	// pattern of the other entry do.
	if out != "[MASKED:email]|[MASKED:ssn]\n" {
		t.Errorf("exempt identity got %q", out)
	}
	starts, _ := sessionRecords(s.d.records())
	found := false
	for _, r := range starts {
		if r.Detail["masking_exempt"] == "customer-pii (identity dba)" && r.Detail["masking"] == "on" {
			found = true
		}
	}
	if !found {
		t.Errorf("no session.start records the exemption")
	}
	s.checkLogs(t)
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// statementPolicy is the policy of the statement table: reads and session
// settings anywhere, writes to items and logs, DDL on scratch tables,
// exports of items; bulk changes, secrets, schema changes of items,
// imports and server-side code denied; everything else denied by default.
const statementPolicy = `rules:
  - id: reads
    when: {classes: [select, set, transaction]}
    action: allow
  - id: item-writes
    when: {classes: [insert, update, delete], tables: [items, logs]}
    action: allow
  - id: scratch-ddl
    when: {classes: [ddl], tables: ["scratch_*"]}
    action: allow
  - id: export-items
    when: {classes: [copy], tables: [items]}
    action: allow
  - id: multi
    when: {classes: [multi_statement]}
    action: allow
  - id: no-bulk
    when: {classes: [update_without_where, delete_without_where, truncate]}
    action: deny
    reason: bulk changes go through a migration
  - id: no-secrets
    when: {tables: [secrets]}
    action: deny
    reason: secrets are off limits
  - id: protect-items
    when: {classes: [ddl, grant], tables: [items]}
    action: deny
    reason: schema changes of items are reviewed
  - id: no-copy-in
    when: {classes: [copy_in]}
    action: deny
  - id: no-code
    when: {classes: [function_call]}
    action: deny
    reason: no server-side code
`

// newPolicySetup is a PostgreSQL target under statementPolicy, with the
// tables items (ids 1 to 9), logs and secrets owned by the SCRAM role.
func newPolicySetup(t *testing.T) *pgSetup {
	t.Helper()
	s := newPGSetup(t, "process", statementPolicy)
	s.pg.psqlSuper(t, pgDatabase,
		"CREATE TABLE items (id int PRIMARY KEY, name text)",
		"INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 9) g",
		"CREATE TABLE logs (id int, name text)",
		"CREATE TABLE secrets (k text, v text)",
		"ALTER TABLE items OWNER TO "+pgScramUser, "ALTER TABLE logs OWNER TO "+pgScramUser,
		"ALTER TABLE secrets OWNER TO "+pgScramUser)
	return s
}

// recordRef is the audit record id a refusal names.
var recordRef = regexp.MustCompile(`\(audit record (\d+)\)`)

// TestPolicyStatements: a table of statements, each run by an unmodified
// psql through interception, is classified and decided as the policy
// says: allowed ones run, denied ones get ERROR 42501 naming the rule and
// the audit record of the decision, which carries the decision, the rule,
// the policy's hash and the reason. Hidden keywords (comments, literals,
// dollar quotes) do not fool the classifier, and keywords hidden in a
// data-modifying CTE, an EXPLAIN ANALYZE, a PREPARE or a second statement
// do not escape it.
func TestPolicyStatements(t *testing.T) {
	s := newPolicySetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const deny, allow = "deny", "allow"
	cases := []struct {
		sql     string
		action  string
		rule    string
		classes []string // among the record's classes
	}{
		{"SELECT 1", allow, "reads", []string{"select"}},
		{"SELECT * FROM items ORDER BY id", allow, "reads", []string{"select"}},
		{"SELECT name FROM items WHERE id = 1", allow, "reads", []string{"select"}},
		{"INSERT INTO items VALUES (10, 'ten')", allow, "item-writes", []string{"insert"}},
		{"UPDATE items SET name = 'TEN' WHERE id = 10", allow, "item-writes", []string{"update"}},
		{"DELETE FROM items WHERE id = 10", allow, "item-writes", []string{"delete"}},
		{"INSERT INTO logs SELECT id, name FROM items", allow, "item-writes", []string{"insert"}},
		{"UPDATE items SET name = 'all'", deny, "no-bulk", []string{"update", "update_without_where"}},
		{"DELETE FROM items", deny, "no-bulk", []string{"delete", "delete_without_where"}},
		{"TRUNCATE items", deny, "no-bulk", []string{"truncate"}},
		{"WITH d AS (DELETE FROM items RETURNING *) SELECT count(*) FROM d", deny, "no-bulk", []string{"select", "delete_without_where"}},
		{"WITH u AS (UPDATE items SET name = 'x' RETURNING id) SELECT * FROM u", deny, "no-bulk", []string{"update_without_where"}},
		{"WITH d AS (DELETE FROM items WHERE id = 9 RETURNING *) SELECT count(*) FROM d", allow, "reads", []string{"select", "delete"}},
		{"INSERT INTO secrets VALUES ('k', 'v')", deny, "no-secrets", []string{"insert"}},
		{"SELECT * FROM secrets", deny, "no-secrets", []string{"select"}},
		{"SELECT * FROM items JOIN secrets ON true", deny, "no-secrets", []string{"select"}},
		{"DROP TABLE items", deny, "protect-items", []string{"ddl"}},
		{"ALTER TABLE items ADD COLUMN x int", deny, "protect-items", []string{"ddl"}},
		{"GRANT SELECT ON items TO PUBLIC", deny, "protect-items", []string{"grant"}},
		{"VACUUM items", deny, "protect-items", []string{"ddl"}},
		{"CREATE TEMP TABLE scratch_tmp AS SELECT * FROM items", deny, "protect-items", []string{"select", "ddl"}},
		{"CREATE TABLE scratch_1 (a int)", allow, "scratch-ddl", []string{"ddl"}},
		{"DROP TABLE scratch_1", allow, "scratch-ddl", []string{"ddl"}},
		{"CREATE TABLE other (a int)", deny, "", []string{"ddl"}},
		{"SELECT 1; DROP TABLE items", deny, "protect-items", []string{"select", "ddl", "multi_statement"}},
		{"INSERT INTO items VALUES (11, 'a'); DELETE FROM items", deny, "no-bulk", []string{"insert", "delete_without_where", "multi_statement"}},
		{"SELECT 1; SELECT 2", allow, "reads", []string{"select", "multi_statement"}},
		{"BEGIN; INSERT INTO items VALUES (12, 'b'); COMMIT", allow, "reads,item-writes", []string{"insert", "transaction", "multi_statement"}},
		{"COPY items TO STDOUT", allow, "export-items", []string{"copy_out"}},
		{"COPY (SELECT id FROM items) TO STDOUT", allow, "reads", []string{"select", "copy_out"}},
		{"COPY items FROM STDIN", deny, "no-copy-in", []string{"copy_in"}},
		{"COPY secrets TO STDOUT", deny, "no-secrets", []string{"copy_out"}},
		{"DO $$BEGIN PERFORM 1; END$$", deny, "no-code", []string{"function_call"}},
		{"CALL nothing()", deny, "no-code", []string{"function_call"}},
		{"NOTIFY chan, 'payload'", deny, "no-code", []string{"function_call"}},
		{"SELECT 1 /* ; DROP TABLE items */", allow, "reads", []string{"select"}},
		{"SELECT 'DROP TABLE items; DELETE FROM items' AS s", allow, "reads", []string{"select"}},
		{"SELECT $x$; DELETE FROM items; $x$ AS s", allow, "reads", []string{"select"}},
		{"SELECT * FROM items WHERE name = '; TRUNCATE items'", allow, "reads", []string{"select"}},
		{"/* a comment */ DELETE FROM items -- no where", deny, "no-bulk", []string{"delete_without_where"}},
		{"EXPLAIN SELECT * FROM items", allow, "reads", []string{"select"}},
		{"EXPLAIN ANALYZE DELETE FROM items", deny, "no-bulk", []string{"delete_without_where"}},
		{"PREPARE p AS DELETE FROM items", deny, "no-bulk", []string{"delete_without_where"}},
		{"EXECUTE p", deny, "", []string{"unknown"}},
		{"SELECT FROM WHERE garbage", deny, "", []string{"unknown"}},
		{"SET statement_timeout = '5s'", allow, "reads", []string{"set"}},
		{"SHOW search_path", allow, "reads", []string{"select"}},
		{"LISTEN chan", allow, "reads", []string{"set"}},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d statements", len(cases))
	}
	hash := s.d.status().ConfigHash
	type outcome struct{ out, errOut string }
	outs := make([]outcome, len(cases))
	for i, tc := range cases {
		out, errOut, _ := s.psql(t, ctx, true, "", "-At", "-v", "VERBOSITY=verbose", "-c", tc.sql)
		outs[i] = outcome{out, errOut}
	}
	// One statement record per psql run, in order.
	recs := executions(s.d.records())
	if len(recs) != len(cases) {
		t.Fatalf("%d statement records for %d statements", len(recs), len(cases))
	}
	for i, tc := range cases {
		rec, o := recs[i], outs[i]
		d := rec.Decision
		if d == nil || d.Action != tc.action || d.Rule != tc.rule || d.Policy != hash {
			t.Errorf("%q: decision %+v, want %s by %q under %s", tc.sql, d, tc.action, tc.rule, hash)
			continue
		}
		for _, c := range tc.classes {
			if !slices.Contains(rec.Statement.Classes, c) {
				t.Errorf("%q: classes %v lack %s", tc.sql, rec.Statement.Classes, c)
			}
		}
		if tc.action == allow {
			if strings.Contains(o.errOut, "ERROR") {
				t.Errorf("%q allowed but failed: %s", tc.sql, o.errOut)
			}
			continue
		}
		if d.Reason == "" {
			t.Errorf("%q: denial without a reason", tc.sql)
		}
		switch rec.Detail["probe"] {
		case "parse":
			// Text tollgate cannot parse is never run: the server
			// only parsed it, and the client has the server's error.
			if !strings.Contains(o.errOut, "ERROR:  42601: syntax error at or near") {
				t.Errorf("%q: client saw %q, want the server's syntax error", tc.sql, o.errOut)
			}
			continue
		case "describe":
			// An EXECUTE of a name nothing prepared (the PREPARE was
			// denied): the server says the name does not exist.
			if !strings.Contains(o.errOut, `ERROR:  26000: prepared statement "p" does not exist`) {
				t.Errorf("%q: client saw %q, want the server's 26000", tc.sql, o.errOut)
			}
			continue
		}
		m := recordRef.FindStringSubmatch(o.errOut)
		if !strings.Contains(o.errOut, "ERROR:  42501: tollgate: statement denied") || m == nil || m[1] != strconv.FormatUint(rec.Seq, 10) {
			t.Errorf("%q (record %d): client saw %q", tc.sql, rec.Seq, o.errOut)
		}
		if tc.rule != "" && !strings.Contains(o.errOut, fmt.Sprintf("rule %q", tc.rule)) {
			t.Errorf("%q: error does not name rule %s: %q", tc.sql, tc.rule, o.errOut)
		}
		if strings.Contains(o.errOut, "PL/pgSQL") || strings.Contains(o.errOut, "FATAL") {
			t.Errorf("%q: %q", tc.sql, o.errOut)
		}
	}
	checkStatementMetrics(t, s, recs, len(cases))
	denials := 0
	for _, tc := range cases {
		if tc.action == deny {
			denials++
		}
	}
	m := scrapeMetrics(t, s.metrics)
	got := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "tollgate_statements_total{") && strings.Contains(k, `decision="deny"`) {
			got += v
		}
	}
	if got != float64(denials) {
		t.Errorf("metrics count %v denied statements, the table %d", got, denials)
	}

	// Nothing denied reached the data: of ids 1 to 9, the allowed CTE
	// deleted 9, the allowed transaction added 12.
	if got := strings.TrimSpace(s.pg.psqlSuper(t, pgDatabase, "SELECT string_agg(id::text, ',' ORDER BY id) FROM items")); got != "1,2,3,4,5,6,7,8,12" {
		t.Errorf("items: %q", got)
	}
	if got := strings.TrimSpace(s.pg.psqlSuper(t, pgDatabase, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('other', 'scratch_1')")); got != "0" {
		t.Errorf("tables created: %s", got)
	}
}

// TestPolicyDenyInTransaction: a statement denied inside BEGIN fails the
// transaction exactly as a server error would: the next statement gets
// 25P02, COMMIT reports ROLLBACK, and nothing of the transaction stays.
// The same through a pgx pipeline and a pgx batch.
func TestPolicyDenyInTransaction(t *testing.T) {
	s := newPolicySetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := "BEGIN;\nINSERT INTO items VALUES (100, 'in tx');\nDROP TABLE items;\nINSERT INTO items VALUES (101, 'after');\nCOMMIT;\n"
	out, errOut, err := s.psql(t, ctx, true, script, "-At", "-v", "VERBOSITY=verbose")
	if err != nil {
		t.Fatalf("psql: %v\n%s\n%s", err, out, errOut)
	}
	if out != "BEGIN\nINSERT 0 1\nROLLBACK\n" {
		t.Errorf("psql output %q", out)
	}
	for _, want := range []string{`ERROR:  42501: tollgate: statement denied by rule "protect-items"`, "ERROR:  25P02: current transaction is aborted"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("psql errors lack %q:\n%s", want, errOut)
		}
	}
	if got := strings.TrimSpace(s.pg.psqlSuper(t, pgDatabase, "SELECT count(*) FROM items WHERE id >= 100")); got != "0" {
		t.Errorf("rows of the failed transaction: %s", got)
	}

	// pgx: the same client runs directly, where the server itself refuses
	// a statement at Parse (an unknown table), and through tollgate, where
	// the policy refuses DROP TABLE: apart from the error's code and
	// message, the client sees exactly the same.
	direct, directErr, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + pgScramPass}, "", pgclientBin(t), "deny-tx",
		s.pg.dsn(pgScramUser, pgDatabase), "SELECT * FROM no_such_table")
	if err != nil {
		t.Fatalf("pgclient direct: %v\n%s\n%s", err, direct, directErr)
	}
	through, throughErr, err := runClient(t, ctx, s.cgroup, nil, "", pgclientBin(t), "deny-tx", s.pg.dsn(pgScramUser, pgDatabase), "DROP TABLE items")
	if err != nil {
		t.Fatalf("pgclient through tollgate: %v\n%s\n%s", err, through, throughErr)
	}
	refusal := regexp.MustCompile(`ERROR (42P01|42501): [^\n]*`)
	if a, b := refusal.ReplaceAllString(direct, "ERROR <refused>"), refusal.ReplaceAllString(through, "ERROR <refused>"); a != b {
		t.Fatalf("pgx sees a refusal by policy differently from one by the server:\ndirect:\n%s\nthrough tollgate:\n%s", direct, through)
	}
	for _, want := range []string{"pipeline status: E", "pipeline next: ERROR 25P02", "pipeline commit: ROLLBACK", "rows 200-299: 0 ok",
		`ERROR 42501: tollgate: statement denied by rule "protect-items"`} {
		if !strings.Contains(through, want) {
			t.Errorf("pgclient through tollgate lacks %q:\n%s", want, through)
		}
	}
	ids := map[string]bool{}
	for _, m := range recordRef.FindAllStringSubmatch(through, -1) {
		ids[m[1]] = true
	}
	if len(ids) != 2 {
		t.Errorf("refusals name records %v, want 2 (the pipeline's, the batch's):\n%s", ids, through)
	}
	if strings.Contains(through, "PL/pgSQL") {
		t.Errorf("refusal shows the PL/pgSQL context:\n%s", through)
	}
	t.Logf("pgx through tollgate:\n%s", through)
}

// TestPolicyHeldCancel: a statement held for approval (simple and
// extended protocol) is ended by the client's CancelRequest with 57014,
// answered by tollgate without waiting for the approval's timeout, and
// the session stays usable; psql's cancel (SIGINT) does the same. The
// approval's end is recorded as cancelled.
func TestPolicyHeldCancel(t *testing.T) {
	s := newApprovalSetup(t, "10m")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s.pg.psqlSuper(t, pgDatabase, "CREATE TABLE cancel_me (id int)", "ALTER TABLE cancel_me OWNER TO "+pgScramUser)
	dsn := s.pg.dsn("deploy", pgDatabase) + " password=" + s.deploy
	out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", pgclientBin(t), "held-cancel", dsn)
	if err != nil {
		t.Fatalf("pgclient: %v\n%s\n%s", err, out, errOut)
	}
	for _, mode := range []string{"simple", "extended"} {
		for _, want := range []string{mode + ": held: true", mode + ": cancel request: ok",
			mode + ": statement: ERROR 57014: canceling statement due to user request (held for approval ap-", mode + ": after: 42 ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("pgclient output lacks %q:\n%s", want, out)
			}
		}
	}

	// psql: Ctrl-C (SIGINT) sends a CancelRequest on a new connection.
	cmd, cleanup := clientCmd(t, s.cgroup, []string{"PGPASSWORD=" + s.deploy}, "psql", "-X", "-At", "-v", "VERBOSITY=verbose",
		"-d", s.pg.dsn("deploy", pgDatabase), "-c", "ALTER TABLE cancel_me ADD COLUMN by_psql int")
	defer cleanup()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	h := s.waitHold(t)
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatalf("psql did not end after its cancel: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "ERROR:  57014: canceling statement due to user request (held for approval "+h.ID) {
		t.Errorf("psql after cancel: %q", stderr.String())
	}
	if got := columns(t, s, "cancel_me"); got != "id" {
		t.Errorf("columns after the cancels: %q", got)
	}
	var cancelled, refused int
	for _, r := range s.d.records() {
		switch {
		case r.Kind == audit.KindApprovalDecision && r.Detail["cancelled"] == "cancel request":
			cancelled++
			if r.Decision == nil || r.Decision.Action != "deny" {
				t.Errorf("decision %+v", r.Decision)
			}
		case r.Kind == audit.KindStatement && r.Decision != nil && r.Decision.Action == "deny" && r.Detail[audit.DetailApproval] != "":
			refused++
		}
	}
	if cancelled != 3 || refused != 3 {
		t.Errorf("%d cancelled approvals, %d refused statements; want 3 each", cancelled, refused)
	}
	if len(s.holds(t)) != 0 {
		t.Error("holds left")
	}
}

// checkStatementMetrics: the daemon's /metrics agree with its audit
// records: one session per psql run, the statements counted by decision
// and first class exactly as recorded, the redirect attached, and the log
// at least as large as what was read of it.
func checkStatementMetrics(t *testing.T, s *pgSetup, recs []*audit.Record, runs int) {
	t.Helper()
	m := scrapeMetrics(t, s.metrics)
	want := map[string]float64{}
	target := ""
	for _, r := range recs {
		target = r.Target
		want[fmt.Sprintf(`tollgate_statements_total{class="%s",decision="%s",target="%s"}`, r.Statement.Classes[0], r.Decision.Action, r.Target)]++
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	for k, v := range m {
		if strings.HasPrefix(k, "tollgate_statements_total{") && want[k] == 0 {
			t.Errorf("%s = %v, not in the records", k, v)
		}
	}
	if k := fmt.Sprintf(`tollgate_sessions_total{identity_method="process",protocol="postgres",target="%s"}`, target); m[k] != float64(runs) {
		t.Errorf("%s = %v, want %d", k, m[k], runs)
	}
	if m["tollgate_redirect_attached"] != 1 {
		t.Errorf("redirect_attached = %v", m["tollgate_redirect_attached"])
	}
	if n := m["tollgate_audit_log_records"]; n < float64(len(recs)) {
		t.Errorf("audit_log_records = %v, fewer than %d statements", n, len(recs))
	}
	if m["tollgate_audit_group_commit_records_count"] == 0 || m["tollgate_audit_append_duration_seconds_count"] == 0 {
		t.Error("no group commit or append observed")
	}
	if m["tollgate_connections_accepted_total"] < float64(runs) {
		t.Errorf("connections_accepted_total = %v, want at least %d", m["tollgate_connections_accepted_total"], runs)
	}
}

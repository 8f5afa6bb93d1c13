// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchPolicy is a realistic policy of 20 rules: four identities (the
// benchmark's process is "app"), deny, review and allow rules over classes,
// tables and targets. %[1]s is the workload's cgroup.
const benchPolicy = `oidc:
  issuers:
    - url: https://issuer.example
      audience: tollgate
identities:
  - name: app
    process: {cgroup: %[1]s}
  - name: nightly-report
    process: {unit: nightly-report.service}
  - name: ci-deploy
    oidc: {issuer: https://issuer.example, claims: {repository: org/app}}
  - name: dba
    oidc: {issuer: https://issuer.example, groups: [dba]}
rules:
  - {id: app-reads, when: {identities: [app], classes: [select, set, transaction]}, action: allow}
  - {id: app-writes, when: {identities: [app], classes: [insert, update, delete], tables: [pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history, orders, order_items]}, action: allow}
  - {id: report-reads, when: {identities: [nightly-report], targets: [pg], classes: [select, copy]}, action: allow}
  - {id: deploy-dml, when: {identities: [ci-deploy], classes: [select, insert, update, delete, set, transaction]}, action: allow}
  - {id: deploy-ddl, when: {identities: [ci-deploy], classes: [ddl]}, action: review, approvers: {groups: [dba], timeout: 15m}}
  - {id: deploy-grants, when: {identities: [ci-deploy], classes: [grant]}, action: review, approvers: {groups: [dba], timeout: 15m}}
  - {id: dba-all, when: {identities: [dba]}, action: allow}
  - {id: no-bulk, when: {classes: [delete_without_where, update_without_where]}, action: deny, reason: bulk changes go through a migration}
  - {id: no-truncate, when: {classes: [truncate]}, action: deny}
  - {id: no-secrets, when: {tables: [secrets, "*.credentials", "vault.*"]}, action: deny}
  - {id: no-audit-writes, when: {classes: [insert, update, delete], tables: ["audit.*"]}, action: deny}
  - {id: no-copy-in, when: {identities: [app, nightly-report], classes: [copy_in]}, action: deny}
  - {id: no-code, when: {identities: [app, nightly-report], classes: [function_call]}, action: deny}
  - {id: payments-review, when: {classes: [update, delete], tables: [payments]}, action: review, approvers: {groups: [dba], timeout: 15m}}
  - {id: users-reads, when: {identities: [app, ci-deploy], classes: [select], tables: [users, public.sessions]}, action: allow}
  - {id: history-append, when: {identities: [app], classes: [insert], tables: ["history_*"]}, action: allow}
  - {id: multi, when: {identities: [app, ci-deploy], classes: [multi_statement]}, action: allow}
  - {id: listen, when: {identities: [app], classes: [set]}, action: allow}
  - {id: staging-anything, when: {targets: [pg], tables: ["staging.*"]}, action: allow}
  - {id: unknown-review, when: {identities: [ci-deploy], classes: [unknown]}, action: review, approvers: {groups: [dba], timeout: 15m}}
`

// BenchmarkPostgresPolicy compares pgbench select-only TPS at 8 clients
// through tollgate under the allow-all policy (audit only) and under the
// realistic 20-rule policy above, in the same run: the daemons alternate,
// three rounds each, and the medians are reported (simple and prepared
// protocol). Nothing is asserted: it is a measurement.
//
//	go test -run '^$' -bench '^BenchmarkPostgresPolicy$' -benchtime 1x ./test/
func BenchmarkPostgresPolicy(b *testing.B) {
	requireRoot(b)
	secs := 8
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_PGBENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s := newPGSetup(b, "process", "")
	const db = "bench"
	s.createDB(b, db)
	dsn := s.pg.dsn(pgScramUser, db)
	if out, errOut, err := runClient(b, ctx, "", []string{"PGPASSWORD=" + pgScramPass}, "", "pgbench", "-i", "-q", "-s", "16", dsn); err != nil {
		b.Fatalf("pgbench -i: %v\n%s%s", err, out, errOut)
	}
	allowCfg := s.d.cfg
	policyCfg := allowCfg
	policyCfg.Targets = pgTargetYAML(s.pg, s.secret, "process", fmt.Sprintf(benchPolicy, s.cgroup))
	s.d.stop()

	tpsRe := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	run := func(mode string) float64 {
		out, errOut, err := runClient(b, ctx, s.cgroup, nil, "", "pgbench", "-n", "-S", "-M", mode, "-c", "8", "-j", "4",
			"-T", strconv.Itoa(secs), dsn)
		if err != nil {
			b.Fatalf("pgbench %s: %v\n%s%s", mode, err, out, errOut)
		}
		m := tpsRe.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in %s", out)
		}
		tps, _ := strconv.ParseFloat(m[1], 64)
		return tps
	}
	results := map[string][]float64{}
	b.ResetTimer()
	for round := range 3 {
		for _, c := range []struct {
			name string
			cfg  daemonConfig
		}{{"allow-all", allowCfg}, {"20-rule", policyCfg}} {
			d := startDaemon(b, c.cfg)
			for _, mode := range []string{"simple", "prepared"} {
				tps := run(mode)
				results[c.name+" "+mode] = append(results[c.name+" "+mode], tps)
				b.Logf("round %d %-9s %-8s tps=%.0f", round, c.name, mode, tps)
			}
			if c.name == "20-rule" {
				// The policy decided: the records name its rules.
				n := 0
				for _, r := range executions(d.records()) {
					if r.Decision != nil && r.Decision.Rule == "app-reads" {
						n++
					}
				}
				if n == 0 {
					b.Fatal("no statement decided by app-reads under the 20-rule policy")
				}
			}
			d.stop()
		}
	}
	b.StopTimer()
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "pgbench -S -c 8 -j 4, %d s per run, 3 rounds alternating, median TPS:\n", secs)
	for _, mode := range []string{"simple", "prepared"} {
		a, p := median(results["allow-all "+mode]), median(results["20-rule "+mode])
		fmt.Fprintf(&sb, "  %-8s allow-all %.0f, 20-rule policy %.0f (%+.1f%%)\n", mode, a, p, (p/a-1)*100)
	}
	b.Log("\n" + sb.String())
}

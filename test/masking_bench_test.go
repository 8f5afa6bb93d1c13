// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkMaskingThroughput streams a 1,000,000-row, 10-column SELECT
// (text results, one row at a time) directly and through tollgate, in the
// same run, with masking off, with 3 column rules, and with every value
// detector on. It reports rows/s and value bytes/s of each, their ratio
// to direct (the direct run next to each), and the daemon's peak RSS
// (VmHWM) against its RSS before the stream: no buffering means it stays
// flat.
//
//	go test -run '^$' -bench '^BenchmarkMaskingThroughput$' -benchtime 1x -timeout 30m ./test/
//
// TOLLGATE_MASK_BENCH_ROWS changes the row count (default 1000000).
func BenchmarkMaskingThroughput(b *testing.B) {
	requireRoot(b)
	rows := 1000000
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_MASK_BENCH_ROWS")); err == nil && v > 0 {
		rows = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	s := newPGSetup(b, "process", maskBenchConfigs[0].yaml)
	const db = "maskbench"
	s.createDB(b, db)
	s.pg.psqlSuper(b, db, fmt.Sprintf(`SET ROLE %s;
CREATE TABLE wide (id int, name text, email text, card text, ssn text, city text, note text, amount numeric(10,2), created date, active bool);
INSERT INTO wide SELECT i, 'name ' || i, 'user' || i || '@example.com', '4111' || lpad(i::text, 12, '0'),
  lpad((i %% 1000)::text, 3, '0') || '-45-' || lpad((i %% 10000)::text, 4, '0'), 'city ' || (i %% 97), md5(i::text),
  i / 100.0, date '2020-01-01' + (i %% 2000), i %% 2 = 0 FROM generate_series(1, %d) i;
ANALYZE wide;`, pgScramUser, rows))
	bin := maskclientBin(b)
	dsn := s.pg.dsn(pgScramUser, db)
	query := "SELECT * FROM wide"

	type sample struct{ rows, bytes, ns int64 }
	stream := func(through bool) sample {
		cg, env := "", []string{"PGPASSWORD=" + pgScramPass}
		if through {
			cg, env = s.cgroup, nil
		}
		out, errOut, err := runClient(b, ctx, cg, env, "", bin, "bench", dsn, query)
		if err != nil {
			b.Fatalf("stream: %v\n%s%s", err, out, errOut)
		}
		var sm sample
		if _, err := fmt.Sscanf(out, "rows %d bytes %d ns %d", &sm.rows, &sm.bytes, &sm.ns); err != nil || sm.rows != int64(rows) {
			b.Fatalf("stream output %q: %v", out, err)
		}
		return sm
	}
	rate := func(n, ns int64) float64 { return float64(n) / (float64(ns) / 1e9) }

	var report strings.Builder
	fmt.Fprintf(&report, "| masking | direct rows/s | tollgate rows/s | ratio | tollgate MB/s | daemon CPU per 1M rows | daemon RSS before → peak |\n|---|---|---|---|---|---|---|\n")
	for i, c := range maskBenchConfigs {
		if i > 0 {
			s.d.stop()
			s.d.cfg.Targets = pgTargetYAML(s.pg, s.secret, "process", c.yaml)
			s.d.cfgPath = writeConfig(b, s.d.cfg)
			s.d.start()
		}
		pid := s.d.cmd.Process.Pid
		stream(true) // warm: catalog lookups, page cache
		before := procStatusKB(b, pid, "VmRSS")
		// Direct and through tollgate alternate, best of three each.
		var best [2]sample
		var cpu time.Duration
		for range 3 {
			for j, through := range []bool{false, true} {
				c0 := procCPU(b, pid)
				sm := stream(through)
				if through {
					cpu += procCPU(b, pid) - c0
				}
				if best[j].ns == 0 || sm.ns < best[j].ns {
					best[j] = sm
				}
			}
		}
		cpuPerM := cpu / 3 * time.Duration(1000000) / time.Duration(rows)
		peak := procStatusKB(b, pid, "VmHWM")
		dr, tr := rate(best[0].rows, best[0].ns), rate(best[1].rows, best[1].ns)
		ratio := tr / dr
		b.ReportMetric(tr, c.name+"-rows/s")
		b.ReportMetric(ratio, c.name+"-ratio")
		b.ReportMetric(float64(peak), c.name+"-peakRSS-KiB")
		b.ReportMetric(cpuPerM.Seconds(), c.name+"-cpu-s/Mrows")
		fmt.Fprintf(&report, "| %s | %.0f | %.0f | %.2f | %.1f | %.2f s | %d MiB → %d MiB |\n", c.name, dr, tr, ratio,
			rate(best[1].bytes, best[1].ns)/1e6, cpuPerM.Seconds(), before/1024, peak/1024)
	}
	b.Logf("%d rows × 10 columns, SELECT * streamed in text format (best of 3):\n%s", rows, report.String())
	if p := os.Getenv("TOLLGATE_BENCH_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// maskBenchConfigs are the masking settings the benchmark compares.
var maskBenchConfigs = []struct{ name, yaml string }{
	{"off", "rules:\n  - id: allow-all\n    action: allow\n"},
	{"3-columns", `rules:
  - id: allow-all
    action: allow
masking:
  - id: pii
    columns: ["public.wide.email", "public.wide.card", "public.wide.ssn"]
    style: redact
`},
	{"all-detectors", `rules:
  - id: allow-all
    action: allow
masking:
  - id: detect
    detectors: [email, card_number, iban, aws_access_key, gcp_key, azure_key, jwt, private_key, password]
    style: redact
`},
}

// procStatusKB reads a "kB" field of /proc/PID/status.
func procStatusKB(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/ship"
)

// benchTotal is how many records each configuration ingests.
const (
	benchTotal = 1 << 17
	benchBatch = 4096
)

// BenchmarkCollectorIngest measures what one collector stores per second
// from 1, 4 and 16 hosts shipping at once (each with one request in flight,
// batches of 4096 records of about 400 bytes, every batch verified against
// a signed checkpoint, COPYed, cosigned), and, in the same run, a plain
// COPY of the same rows into the same table: the ratio is the cost of
// verification, HTTP and the witness bookkeeping. Requests are built
// before the clock starts, so the figures are the collector's.
func BenchmarkCollectorIngest(b *testing.B) {
	requireRoot(b)
	pg := startPostgres(b)
	c := newCollector(b, pg)
	conn := c.conn(b)
	pad := strings.Repeat("x", 250)

	copyRate := func(rows [][]any) float64 {
		start := time.Now()
		for i := 0; i < len(rows); i += benchBatch {
			end := min(i+benchBatch, len(rows))
			if _, err := conn.CopyFrom(context.Background(), pgx.Identifier{"records"},
				[]string{"origin", "seq", "time", "kind", "identity", "target", "session", "fingerprint", "decision", "data"},
				pgx.CopyFromRows(rows[i:end])); err != nil {
				b.Fatal(err)
			}
		}
		return float64(len(rows)) / time.Since(start).Seconds()
	}

	for _, hosts := range []int{1, 4, 16} {
		per := benchTotal / hosts
		bodies := make([][][]byte, hosts)
		creds := make([]string, hosts)
		var copyRows [][]any
		for i := range hosts {
			h := newHostLogB(b, fmt.Sprintf("bench-%d-%d", hosts, i), per, pad)
			creds[i] = h.enrolledB(b, c)
			for from := 0; from < per; from += benchBatch {
				to := min(from+benchBatch, per)
				bodies[i] = append(bodies[i], h.bodyB(b, uint64(from), uint64(to)))
			}
			if i == 0 {
				es, err := h.log.Read(0, per)
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range es {
					r, err := e.Record()
					if err != nil {
						b.Fatal(err)
					}
					copyRows = append(copyRows, copyRow("copy-baseline-"+fmt.Sprint(hosts), e.Seq, r, e.Bytes))
				}
			}
		}
		for len(copyRows) < benchTotal {
			copyRows = append(copyRows, copyRows[:min(len(copyRows), benchTotal-len(copyRows))]...)
		}
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for _, body := range bodies[i] {
					for {
						code, rb := postB(c.url+collector.PathAddEntries, creds[i], body)
						if code == http.StatusOK {
							break
						}
						if code != http.StatusTooManyRequests {
							b.Errorf("host %d: %d %s", i, code, rb)
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}(i)
		}
		wg.Wait()
		rate := float64(hosts*per) / time.Since(start).Seconds()
		b.StopTimer()
		cr := copyRate(copyRows)
		b.Logf("%2d hosts: %8.0f records/s ingested; plain COPY of the same rows %8.0f records/s; ratio %.2f", hosts, rate, cr, rate/cr)
		b.ReportMetric(rate, fmt.Sprintf("records/s-%dhosts", hosts))
		b.ReportMetric(rate/cr, fmt.Sprintf("ratio-to-copy-%dhosts", hosts))
	}
}

// copyRow is the row the collector stores for record r: the baseline COPY
// must fill the same columns, or it skips the partial indexes on identity,
// target and session that the collector's rows go through.
func copyRow(origin string, seq uint64, r *audit.Record, data []byte) []any {
	str := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var identity, fingerprint, decision any
	if r.Identity != nil {
		identity = str(r.Identity.Name)
	}
	if r.Statement != nil {
		fingerprint = str(r.Statement.Fingerprint)
	}
	if r.Decision != nil {
		decision = str(r.Decision.Action)
	}
	return []any{origin, int64(seq), r.Time, string(r.Kind), identity, str(r.Target), str(r.Session), fingerprint, decision, data}
}

// The helpers below are hostLog's for benchmarks (testing.TB).

func newHostLogB(b testing.TB, name string, n int, pad string) *hostLog {
	b.Helper()
	dir := b.TempDir()
	k, err := audit.LoadOrCreateHostKey(dir, name)
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{HostID: name, Key: k, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	rs := make([]*audit.Record, 0, 1000)
	for i := 0; i < n; i++ {
		rs = append(rs, &audit.Record{Kind: audit.KindStatement, Session: "01JDBENCH", Target: "orders-db",
			Statement: &audit.Statement{Text: "SELECT * FROM orders WHERE id = $1", Fingerprint: "0a42922fab0bd73f", Classes: []string{"select"}},
			Decision:  &audit.Decision{Action: "allow", Rule: "reads"}, Detail: map[string]string{"pad": pad}})
		if len(rs) == cap(rs) || i == n-1 {
			if err := l.AppendAll(context.Background(), rs); err != nil {
				b.Fatal(err)
			}
			rs = rs[:0]
		}
	}
	return &hostLog{name: name, key: k, log: l}
}

func (h *hostLog) enrolledB(b testing.TB, c *collectorProc) string {
	body, _ := json.Marshal(collector.EnrollRequest{Token: c.enroll(b, h.name), Host: h.name, Origin: h.log.ID(), Key: h.key.VerifierKey})
	code, rb := postB(c.url+collector.PathEnroll, "", body)
	if code != http.StatusOK {
		b.Fatalf("enroll: %d %s", code, rb)
	}
	var er collector.EnrollResponse
	json.Unmarshal(rb, &er)
	return er.Credential
}

func (h *hostLog) bodyB(b testing.TB, from, to uint64) []byte {
	es, err := h.log.Read(from, int(to-from))
	if err != nil {
		b.Fatal(err)
	}
	root, err := h.log.Root(to)
	if err != nil {
		b.Fatal(err)
	}
	cp, err := audit.SignCheckpoint(h.log.ID(), to, root, time.Now(), h.key.Signer)
	if err != nil {
		b.Fatal(err)
	}
	req := collector.AddEntriesRequest{Origin: h.log.ID(), Start: from, Checkpoint: cp.Note}
	for _, e := range es {
		req.Entries = append(req.Entries, e.Bytes)
	}
	body, _ := json.Marshal(req)
	return body
}

func postB(url, cred string, body []byte) (int, []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, []byte(sb.String())
}

// BenchmarkCollectorLag runs the real shipper (audit/ship, as the daemon
// does, interval 100ms) on a log appended at a steady 2000 records/s for
// 10 s and reports the end-to-end lag: from a record's append until the
// collector has cosigned a checkpoint covering it (p50, p99). Then it
// stops the collector, builds a backlog, restarts it and reports the
// catch-up rate.
func BenchmarkCollectorLag(b *testing.B) {
	requireRoot(b)
	pg := startPostgres(b)
	c := newCollector(b, pg)
	h := newHostLogB(b, "lag", 0, "")
	tok := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(c.enroll(b, "lag")), 0o600); err != nil {
		b.Fatal(err)
	}
	state := b.TempDir()
	s, err := ship.New(ship.Options{URL: c.url, TokenFile: tok, Interval: 100 * time.Millisecond, StateDir: state,
		HostID: "lag", Key: h.key, Log: h.log})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	pad := strings.Repeat("x", 250)
	rec := func() *audit.Record {
		return &audit.Record{Kind: audit.KindStatement, Session: "01JDLAG", Target: "orders-db",
			Statement: &audit.Statement{Text: "SELECT 1", Fingerprint: "0a42922fab0bd73f"}, Detail: map[string]string{"pad": pad}}
	}
	const rate, secs = 2000, 10
	appended := make([]time.Time, 0, rate*secs)
	var lags []time.Duration
	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < rate*secs/20; i++ {
		<-tick.C
		rs := make([]*audit.Record, 20)
		for j := range rs {
			rs[j] = rec()
		}
		if err := h.log.AppendAll(ctx, rs); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		for range rs {
			appended = append(appended, now)
		}
		cos := s.Status().Cosigned
		for uint64(len(lags)) < cos && len(lags) < len(appended) {
			lags = append(lags, now.Sub(appended[len(lags)]))
		}
	}
	tick.Stop()
	for len(lags) < len(appended) {
		cos := s.Status().Cosigned
		now := time.Now()
		for uint64(len(lags)) < cos && len(lags) < len(appended) {
			lags = append(lags, now.Sub(appended[len(lags)]))
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("not caught up: %+v\ncollector log:\n%s", s.Status(), truncateLog(c.stderr.String()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	slices.Sort(lags)
	p50, p99 := lags[len(lags)/2], lags[len(lags)*99/100]
	b.Logf("steady %d records/s for %ds: end-to-end lag p50 %v, p99 %v, max %v", rate, secs, p50, p99, lags[len(lags)-1])

	// Catch-up: collector down, a backlog (1M records unless
	// TOLLGATE_BENCH_BACKLOG says otherwise), collector up. The backlog
	// is indexed before the clock starts, so the CPU this process spends
	// from then on is the shipper's: reading the log, building requests,
	// HTTP. The collector's CPU is its process's.
	c.stop()
	backlog := 1000000
	if v := os.Getenv("TOLLGATE_BENCH_BACKLOG"); v != "" {
		if backlog, err = strconv.Atoi(v); err != nil || backlog < 1000 {
			b.Fatalf("TOLLGATE_BENCH_BACKLOG=%q: want a number of records, at least 1000", v)
		}
	}
	rs := make([]*audit.Record, 1000)
	for i := 0; i < backlog; i += len(rs) {
		for j := range rs {
			rs[j] = rec()
		}
		if err := h.log.AppendAll(ctx, rs); err != nil {
			b.Fatal(err)
		}
	}
	for h.log.Unstored() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	from := s.Status().Cosigned
	c.start()
	collCPU0 := procCPU(b, c.cmd.Process.Pid)
	ship0 := selfCPU(b)
	t0 := time.Now()
	for s.Status().Cosigned < h.log.Size() {
		if time.Since(t0) > 15*time.Minute {
			b.Fatalf("catch-up stalled: %+v\ncollector log:\n%s", s.Status(), truncateLog(c.stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := float64(h.log.Size() - from)
	catch := n / time.Since(t0).Seconds()
	shipCPU := float64((selfCPU(b) - ship0).Microseconds()) / n
	collCPU := float64((procCPU(b, c.cmd.Process.Pid) - collCPU0).Microseconds()) / n
	b.Logf("catch-up of %.0f records: %.0f records/s (%.1fx the steady rate); CPU per record: shipper %.2f µs, collector %.2f µs",
		n, catch, catch/rate, shipCPU, collCPU)
	b.ReportMetric(shipCPU, "shipper-cpu-µs/record")
	b.ReportMetric(collCPU, "collector-cpu-µs/record")
	b.ReportMetric(float64(p50.Milliseconds()), "lag-p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "lag-p99-ms")
	b.ReportMetric(catch, "catchup-records/s")
}

// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/tollgate-dev/tollgate/audit"
)

func scrape(t *testing.T, d *Daemon) string {
	t.Helper()
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantLines checks each line appears in the exposition as it is.
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("no line %q in:\n%s", l, text)
		}
	}
}

// TestObserve: the records of a session move the counters they stand
// for, exactly, and the sources are read at scrape time.
func TestObserve(t *testing.T) {
	var size uint64 = 7
	pending := 2
	d := NewDaemon(Build{Version: "v1", Commit: "abc"}, Sources{
		LogSize:          func() uint64 { return size },
		Pruned:           func() uint64 { return 4 },
		Accepted:         func() uint64 { return 3 },
		LookupMisses:     func() uint64 { return 1 },
		RedirectAttached: func() bool { return true },
		HoldsPending:     func() int { return pending },
		RecordsPending:   func() int { return 3 },
		Shipping: func() Shipping {
			return Shipping{Shipped: 5, Cosigned: 4, LagRecords: 2, LagSeconds: 1.5}
		},
		Maps: func() ([]MapUsage, error) {
			return []MapUsage{{Name: "origins", Entries: 12, Max: 65536}}, nil
		},
	})
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	recs := []*audit.Record{
		{Kind: audit.KindSessionStart, Target: "db", Identity: &audit.Identity{Method: "process"}, Detail: map[string]string{"protocol": "postgres"}},
		{Kind: audit.KindSessionStart, Target: "db", Detail: map[string]string{"protocol": "postgres", "request": "cancel"}},
		{Kind: audit.KindStatement, Target: "db", Decision: &audit.Decision{Action: "allow"}, Statement: &audit.Statement{Classes: []string{"select"}}},
		{Kind: audit.KindStatement, Target: "db", Decision: &audit.Decision{Action: "allow"}, Statement: &audit.Statement{Classes: []string{"select"}}},
		{Kind: audit.KindStatement, Target: "db", Decision: &audit.Decision{Action: "deny"}, Statement: &audit.Statement{Classes: []string{"delete", "delete_without_where"}}},
		{Kind: audit.KindResult, Target: "db", Detail: map[string]string{"masked": "5",
			"masked_columns": `[{"column":"public.u.email","rule":"pii","masked":3},{"column":"note","found":{"email":2}}]`}},
		{Kind: audit.KindResult, Target: "db", Detail: map[string]string{"sqlstate": "42501"}},
		{Kind: audit.KindApprovalRequest, Target: "db", Time: t0, Detail: map[string]string{audit.DetailApproval: "a1"}},
		{Kind: audit.KindApprovalDecision, Target: "db", Time: t0.Add(20 * time.Second), Decision: &audit.Decision{Action: "allow"},
			Detail: map[string]string{audit.DetailApproval: "a1", audit.DetailFinal: "false"}},
		{Kind: audit.KindApprovalDecision, Target: "db", Time: t0.Add(40 * time.Second), Decision: &audit.Decision{Action: "allow"},
			Detail: map[string]string{audit.DetailApproval: "a1"}},
	}
	d.Durable(recs[:5], 300*time.Microsecond)
	d.Durable(recs[5:], -1)
	d.Committed(5, time.Millisecond)
	text := scrape(t, d)
	wantLines(t, text,
		`tollgate_sessions_total{identity_method="process",protocol="postgres",target="db"} 1`,
		`tollgate_statements_total{class="select",decision="allow",target="db"} 2`,
		`tollgate_statements_total{class="delete",decision="deny",target="db"} 1`,
		`tollgate_statement_results_total{outcome="ok",target="db"} 1`,
		`tollgate_statement_results_total{outcome="error",target="db"} 1`,
		`tollgate_masked_values_total{detector="column_rule",target="db"} 3`,
		`tollgate_masked_values_total{detector="email",target="db"} 2`,
		`tollgate_holds_total{outcome="requested",target="db"} 1`,
		`tollgate_holds_total{outcome="approved",target="db"} 1`,
		`tollgate_approval_duration_seconds_sum{outcome="approved"} 40`,
		`tollgate_approval_duration_seconds_count{outcome="approved"} 1`,
		`tollgate_audit_append_duration_seconds_count 1`,
		`tollgate_audit_group_commit_records_sum 5`,
		`tollgate_audit_records_total{kind="statement"} 3`,
		`tollgate_audit_log_records 7`,
		`tollgate_audit_pruned_records 4`,
		`tollgate_connections_accepted_total 3`,
		`tollgate_origin_lookup_misses_total 1`,
		`tollgate_redirect_attached 1`,
		`tollgate_bpf_map_entries{map="origins"} 12`,
		`tollgate_bpf_map_max_entries{map="origins"} 65536`,
		`tollgate_holds_pending 2`,
		`tollgate_audit_records_pending 3`,
		`tollgate_ship_shipped_records 5`,
		`tollgate_ship_cosigned_records 4`,
		`tollgate_ship_lag_records 2`,
		`tollgate_ship_lag_seconds 1.5`,
		`tollgate_ship_halted 0`,
	)
	if !strings.Contains(text, `tollgate_build_info{commit="abc",goversion="go`) {
		t.Error("no build info")
	}
	size, pending = 9, 0
	wantLines(t, scrape(t, d), `tollgate_audit_log_records 9`, `tollgate_holds_pending 0`)
}

// TestListenerLoopbackOnly: the endpoint has no authentication, so it is
// never served beyond the host.
func TestListenerLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464"} {
		if _, err := Listener(addr); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%s: %v, want ErrNotLoopback", addr, err)
		}
	}
	if _, err := Listener("localhost:9464"); err == nil {
		t.Error("a host name was accepted")
	}
	ln, err := Listener("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// TestLint: the exposition passes the linter promtool check metrics runs
// (names with units and _total, help on every metric).
func TestLint(t *testing.T) {
	d := NewDaemon(Build{Version: "v1", Commit: "abc"}, Sources{
		LogSize: func() uint64 { return 1 }, Accepted: func() uint64 { return 1 }, LookupMisses: func() uint64 { return 0 },
		Refused: func() uint64 { return 0 }, RedirectAttached: func() bool { return true }, HoldsPending: func() int { return 0 },
		Shipping: func() Shipping { return Shipping{} },
	})
	d.Durable([]*audit.Record{{Kind: audit.KindStatement, Target: "db", Decision: &audit.Decision{Action: "allow"}}}, time.Millisecond)
	problems, err := promlint.New(strings.NewReader(scrape(t, d))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "go_") || strings.HasPrefix(p.Metric, "process_") {
			continue // the client library's own
		}
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestDashboard: every metric the packaged Grafana dashboard queries is
// one the daemon exposes.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../packaging/grafana/tollgate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	d := NewDaemon(Build{}, Sources{LogSize: func() uint64 { return 0 }, Accepted: func() uint64 { return 0 },
		LookupMisses: func() uint64 { return 0 }, Refused: func() uint64 { return 0 },
		RedirectAttached: func() bool { return false }, HoldsPending: func() int { return 0 },
		Shipping: func() Shipping { return Shipping{} },
		Maps:     func() ([]MapUsage, error) { return []MapUsage{{Name: "origins", Max: 65536}}, nil }})
	// Vectors are exposed once they have a child: one record of each kind.
	t0 := time.Now()
	d.Durable([]*audit.Record{
		{Kind: audit.KindSessionStart, Target: "db"},
		{Kind: audit.KindStatement, Target: "db"},
		{Kind: audit.KindResult, Target: "db", Detail: map[string]string{"masked_columns": `[{"column":"c","found":{"email":1}}]`}},
		{Kind: audit.KindApprovalRequest, Target: "db", Time: t0, Detail: map[string]string{audit.DetailApproval: "a"}},
		{Kind: audit.KindApprovalDecision, Target: "db", Time: t0, Detail: map[string]string{audit.DetailApproval: "a"}},
	}, time.Millisecond)
	d.Committed(1, time.Millisecond)
	exposed := scrape(t, d)
	names := regexp.MustCompile(`tollgate_[a-z_]+`).FindAllString(string(b), -1)
	if len(names) < 10 {
		t.Fatalf("only %d metric names in the dashboard", len(names))
	}
	for _, n := range names {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if !strings.Contains(exposed, "# HELP "+base+" ") {
			t.Errorf("dashboard queries %s, which is not exposed", n)
		}
	}
}

// TestCollectorMetrics: answers are counted by route and status, and the
// records of accepted add-entries are summed.
func TestCollectorMetrics(t *testing.T) {
	c := NewCollector(Build{Version: "v1", Commit: "abc"})
	c.Answered("add-entries", 200, time.Millisecond, 100)
	c.Answered("add-entries", 409, time.Millisecond, 0)
	c.Answered("enroll", 200, time.Millisecond, 0)
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantLines(t, string(b),
		`tollgate_collector_requests_total{code="200",route="add-entries"} 1`,
		`tollgate_collector_requests_total{code="409",route="add-entries"} 1`,
		`tollgate_collector_requests_total{code="200",route="enroll"} 1`,
		`tollgate_collector_records_received_total 100`,
		`tollgate_collector_request_duration_seconds_count{route="add-entries"} 2`)
	problems, err := promlint.New(strings.NewReader(string(b))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.HasPrefix(p.Metric, "go_") && !strings.HasPrefix(p.Metric, "process_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

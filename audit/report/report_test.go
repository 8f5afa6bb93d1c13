// SPDX-License-Identifier: Apache-2.0

package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
	"github.com/tollgate-dev/tollgate/audit/report"
)

// sessionWithEverything writes a session with a denial, an approval and
// masking, and a self-approved one, and returns the log.
func sessionWithEverything(t *testing.T) *audit.Log {
	t.Helper()
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{NoSync: true})
	t0 := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	deploy := &audit.Identity{Name: "ci-deploy", Method: "oidc", Issuer: "https://issuer", Subject: "repo:org/app"}
	dba := &audit.Identity{Name: "dba-alice", Method: "oidc"}
	for _, r := range []*audit.Record{
		{Time: at(0), Kind: audit.KindAgentStart},
		{Time: at(1), Kind: audit.KindHeartbeat, Detail: map[string]string{"clock_sync": "synchronised", "clock_max_error_us": "1200"}},
		{Time: at(10), Kind: audit.KindSessionStart, Session: "s1", Target: "orders-db", Dst: "127.0.0.2:5432", Client: "127.0.0.1:40000",
			Process: &audit.Process{Pid: 4242, UID: 1001, Comm: "python3"}, Identity: deploy},
		{Time: at(20), Kind: audit.KindStatement, Session: "s1", Statement: &audit.Statement{Text: "DELETE FROM orders", Classes: []string{"delete_without_where"}},
			Decision: &audit.Decision{Action: "deny", Rule: "no-bulk-delete"}},
		{Time: at(30), Kind: audit.KindStatement, Session: "s1", Statement: &audit.Statement{Text: "ALTER TABLE orders ADD x int", Classes: []string{"ddl"}},
			Decision: &audit.Decision{Action: "review", Rule: "deploy-migrations"}},
		{Time: at(31), Kind: audit.KindApprovalRequest, Session: "s1", Detail: map[string]string{"approval": "a1"}},
		{Time: at(2520), Kind: audit.KindApprovalDecision, Session: "s1", Identity: &audit.Identity{Name: "dba-bob", Method: "oidc", Subject: "bob@example.com"},
			Decision: &audit.Decision{Action: "allow"}, Detail: map[string]string{"approval": "a1", "final": "false"}},
		{Time: at(2531), Kind: audit.KindApprovalDecision, Session: "s1", Identity: dba, Decision: &audit.Decision{Action: "allow"},
			Detail: map[string]string{"approval": "a1"}},
		{Time: at(2540), Kind: audit.KindResult, Session: "s1", Detail: map[string]string{"tag": "ALTER TABLE"}},
		{Time: at(2600), Kind: audit.KindStatement, Session: "s1", Statement: &audit.Statement{Text: "SELECT email FROM customers", Classes: []string{"select"}},
			Decision: &audit.Decision{Action: "allow", Rule: "reads"}},
		{Time: at(2610), Kind: audit.KindResult, Session: "s1", Detail: map[string]string{"tag": "SELECT 3", "masked": "3"}},
		{Time: at(3000), Kind: audit.KindSessionEnd, Session: "s1", Bytes: &audit.Bytes{Up: 100, Down: 2000}, DurationNS: int64(2990 * time.Millisecond), CloseReason: "client close"},
		{Time: at(4000), Kind: audit.KindSessionStart, Session: "s2", Target: "orders-db", Identity: dba},
		{Time: at(4010), Kind: audit.KindApprovalRequest, Session: "s2", Detail: map[string]string{"approval": "a2"}},
		{Time: at(4020), Kind: audit.KindApprovalDecision, Session: "s2", Identity: dba, Decision: &audit.Decision{Action: "allow"},
			Detail: map[string]string{"approval": "a2"}},
		{Time: at(4100), Kind: audit.KindGrant, Identity: dba, Detail: map[string]string{"identity": "ci-deploy", "target": "orders-db", "allow": "ddl", "for": "30m", "reason": "migration"}},
	} {
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func sessionRecordsOf(t *testing.T, l *audit.Log, id string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	if err := l.Select(context.Background(), audit.Filter{Session: id}, func(e audit.Entry) error {
		r, err := audit.DecodeFast(e.Bytes)
		recs = append(recs, r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestReplay(t *testing.T) {
	l := sessionWithEverything(t)
	recs := sessionRecordsOf(t, l, "s1")
	if len(recs) != 10 {
		t.Fatalf("%d records of s1", len(recs))
	}
	var out bytes.Buffer
	var slept []time.Duration
	err := report.Replay(context.Background(), &out, recs, report.ReplayOptions{Speed: 2, IdleLimit: time.Second,
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Logf("\n%s", text)
	// The denial, the approval (with its wait) and the masking, in order.
	want := []string{"process  pid 4242", "identity ci-deploy (oidc https://issuer repo:org/app)",
		"DELETE FROM orders  [delete_without_where]  → DENIED (rule no-bulk-delete)",
		"held for approval a1", "vote to approve by dba-bob (oidc bob@example.com)", "APPROVED by dba-alice (oidc) after 2.5s", "masked=3", "client close, up 100 B, down 2000 B, 2.99s"}
	pos := 0
	for _, w := range want {
		i := strings.Index(text[pos:], w)
		if i < 0 {
			t.Fatalf("replay lacks %q after offset %d", w, pos)
		}
		pos += i
	}
	if !strings.Contains(text, "+2.521s") {
		t.Errorf("offsets wrong:\n%s", text)
	}
	// Paced at twice the speed, the 2.5 s wait capped at 1 s.
	if len(slept) != 9 || slept[0] != 5*time.Millisecond || slept[3] != time.Second {
		t.Errorf("pauses %v", slept)
	}

	var cast bytes.Buffer
	if err := report.WriteCast(&cast, recs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(cast.String()), "\n")
	var hdr map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil || hdr["version"] != float64(2) {
		t.Fatalf("cast header %s: %v", lines[0], err)
	}
	var ev []any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil || ev[1] != "o" || ev[0].(float64) != 2.99 {
		t.Fatalf("last cast event %s: %v", lines[len(lines)-1], err)
	}
	if err := report.Replay(context.Background(), &out, nil, report.ReplayOptions{}); err == nil {
		t.Error("empty replay accepted")
	}
}

func TestReport(t *testing.T) {
	l := sessionWithEverything(t)
	b := report.NewBuilder(l.ID(), time.Time{}, time.Time{})
	if err := l.Select(context.Background(), audit.Filter{}, func(e audit.Entry) error {
		r, err := audit.DecodeFast(e.Bytes)
		if err == nil {
			b.Add(r)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rep := b.Finish()
	if len(rep.Access) != 2 {
		t.Fatalf("access rows %+v", rep.Access)
	}
	ci := rep.Access[0]
	if ci.Identity != "ci-deploy" || ci.Sessions != 1 || ci.Statements != 3 || ci.Denied != 1 || ci.Approved != 1 ||
		ci.Masked != 3 || ci.ApprovalWaitNS != int64(2500*time.Millisecond) || ci.SelfApprovals != 0 || ci.Classes["ddl"] != 1 {
		t.Errorf("ci-deploy row %+v", ci)
	}
	// An approver is named as the person who decided, not only as the
	// configured identity they matched.
	if !slices.Equal(ci.Approvers, []string{"dba-bob (bob@example.com)", "dba-alice"}) {
		t.Errorf("ci-deploy approvers %v: a vote names its approver without counting as a decision", ci.Approvers)
	}
	if len(rep.SelfApprovals) != 1 || rep.SelfApprovals[0].Identity != "dba-alice" {
		t.Errorf("self-approvals %+v", rep.SelfApprovals)
	}
	if len(rep.Denials) != 1 || len(rep.Grants) != 1 || rep.Heartbeats != 1 || rep.MaxClockError != 1200 {
		t.Errorf("report %+v", rep)
	}
	var text, csvOut, js, html bytes.Buffer
	for _, f := range []func() error{
		func() error { return rep.WriteText(&text) }, func() error { return rep.WriteCSV(&csvOut) },
		func() error { return rep.WriteJSON(&js) }, func() error { return rep.WriteHTML(&html) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("\n%s", text.String())
	for _, c := range []string{"A.5.15", "A.5.18", "A.5.28", "A.5.33", "A.8.2", "A.8.5", "A.8.11", "A.8.15", "A.8.16", "A.8.17"} {
		if !strings.Contains(text.String(), c) || !strings.Contains(html.String(), c) {
			t.Errorf("control %s missing from the text or HTML report", c)
		}
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][0] != "ci-deploy" {
		t.Errorf("csv %v, %v", rows, err)
	}
	var back report.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Records != rep.Records {
		t.Errorf("json: %v", err)
	}
	h := html.String()
	for _, w := range []string{`<table id="access-table">`, `<figure id="chart-sessions">`, "<svg", "<rect", `class="bad"`, "dba-alice"} {
		if !strings.Contains(h, w) {
			t.Errorf("HTML lacks %q", w)
		}
	}
	if strings.Contains(h, "<script") || strings.Contains(h, "http://") && !strings.Contains(h, "http://www.w3.org/2000/svg") {
		t.Error("HTML is not self-contained")
	}
}

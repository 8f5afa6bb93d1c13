// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/agent/postgres"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/testoidc"
	"github.com/tollgate-dev/tollgate/policy"
)

// testIssuer is the shared test OIDC provider.
type testIssuer = testoidc.Issuer

func newTestIssuer(t *testing.T) *testIssuer { return testoidc.NewIssuer(t) }

// controlPolicy has a single-approver review rule for ddl by deploy, a
// two-approver rule for truncate, and a deny rule for grant statements.
const controlPolicy = `state_dir: %[2]s
targets:
  - name: db
    protocol: postgres
    match: ["127.0.0.2:5432"]
    upstream: {user: app, password_file: /etc/tollgate/db.pw, sslmode: disable}
oidc:
  issuers: [{url: %[1]q, audience: tollgate}]
identities:
  - name: deploy
    oidc: {issuer: %[1]q, subject: ci}
  - name: dba
    oidc: {issuer: %[1]q, groups: [dba]}
rules:
  - id: ddl-review
    when: {identities: [deploy], targets: [db], classes: [ddl]}
    action: review
    approvers: {identities: [dba], timeout: 10m}
  - id: truncate-four-eyes
    when: {identities: [deploy], classes: [truncate]}
    action: review
    approvers: {groups: [dba], min: 2, timeout: 10m}
`

// testAgent is an Agent with a real audit log, real approvals and grants,
// a real OIDC verifier and its API on a real unix socket.
type testAgent struct {
	a      *Agent
	is     *testIssuer
	client *Client
	sock   string
	dir    string
	stop   func() // stops serving and closes the log, like a daemon exit
}

func newTestAgent(t *testing.T) *testAgent {
	t.Helper()
	is := newTestIssuer(t)
	dir := t.TempDir()
	return startTestAgent(t, is, dir)
}

func startTestAgent(t *testing.T, is *testIssuer, dir string) *testAgent {
	t.Helper()
	cfg, err := policy.Parse(fmt.Appendf(nil, controlPolicy, is.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	alog, err := audit.Open(filepath.Join(dir, LogFile), audit.Options{HostID: "test", NoSync: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{log: log, started: time.Now(), cfg: cfg, cfgHash: cfg.Hash(), alog: alog, ctx: ctx, open: map[string]*sessionInfo{},
		approvals: policy.NewApprovals(16), oidc: postgres.NewOIDCVerifier(cfg.OIDC.Issuers, nil), rec: audit.NewRecorder(alog, log)}
	a.pol.set(&cfg, a.cfgHash)
	if a.grants, err = policy.OpenGrants(filepath.Join(dir, GrantsFile)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	closer, err := a.serveAPI(sock)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			closer.Close()
			cancel()
			alog.Close()
		})
	}
	t.Cleanup(stop)
	return &testAgent{a: a, is: is, client: NewClient(sock), sock: sock, dir: dir, stop: stop}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// records returns every record in the log.
func (ta *testAgent) records(t *testing.T) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	entries, err := ta.a.alog.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		r, err := e.Record()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func lastOf(recs []*audit.Record, kind audit.Kind) *audit.Record {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Kind == kind {
			return recs[i]
		}
	}
	return nil
}

// hold puts a statement on hold as the PostgreSQL relay does, and acts as
// the relay's side of the contract: when the verdict arrives it records
// the final approval.decision, then hands the verdict to the test.
func (ta *testAgent) hold(t *testing.T, rule string) (string, <-chan policy.Verdict) {
	t.Helper()
	var ap policy.Approvers
	for _, r := range ta.a.cfg.Rules {
		if r.ID == rule {
			ap = r.Approvers
		}
	}
	requester := policy.Person{Name: "deploy", Issuer: ta.is.URL, Subject: "ci", Identities: []string{"deploy"}}
	ids := make(chan string, 1)
	verdicts := make(chan policy.Verdict, 1)
	go func() {
		var id string
		v, err := ta.a.approvals.Request(context.Background(), policy.Hold{Session: "S1", Target: "db", Statement: "ALTER TABLE t ADD c int",
			Rule: rule, Requester: requester, Approvers: ap}, func(h policy.Hold) error { id = h.ID; ids <- h.ID; return nil })
		if err != nil {
			t.Error(err)
			close(ids)
			close(verdicts)
			return
		}
		action := "deny"
		if v.Approved {
			action = "allow"
		}
		if err := ta.a.record(&audit.Record{Kind: audit.KindApprovalDecision, Session: "S1", Target: "db",
			Decision: &audit.Decision{Action: action, Rule: rule}, Detail: map[string]string{audit.DetailApproval: id}}); err != nil {
			t.Error(err)
		}
		verdicts <- v
	}()
	return <-ids, verdicts
}

func TestAPIApproveAndDeny(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	alice := ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})

	id, verdicts := ta.hold(t, "ddl-review")
	hs, err := ta.client.Approvals(ctx)
	if err != nil || len(hs) != 1 || hs[0].ID != id || hs[0].Rule != "ddl-review" || hs[0].Requester.Subject != "ci" {
		t.Fatalf("Approvals = %+v, %v", hs, err)
	}
	res, err := ta.client.Decide(ctx, id, true, "looks fine", alice)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Final || !res.Approved || !res.Recorded || res.Approvals != 1 {
		t.Fatalf("approve: %+v", res)
	}
	if v := <-verdicts; !v.Approved || len(v.By) != 1 || v.By[0].Subject != "alice" || v.By[0].Name != "dba" {
		t.Fatalf("verdict %+v", v)
	}
	// The answer came after the relay's record of it.
	recs := ta.records(t)
	if rec := recs[res.Seq]; rec.Kind != audit.KindApprovalDecision || rec.Detail[audit.DetailApproval] != id {
		t.Fatalf("seq %d is %+v", res.Seq, rec)
	}
	if hs, _ := ta.client.Approvals(ctx); len(hs) != 0 {
		t.Fatalf("still held: %+v", hs)
	}

	// Deny needs a reason; with one, it ends the hold.
	id, verdicts = ta.hold(t, "ddl-review")
	if _, err := ta.client.Decide(ctx, id, false, "", alice); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("deny without reason: %v", err)
	}
	res, err = ta.client.Decide(ctx, id, false, "not during business hours", alice)
	if err != nil || !res.Final || res.Approved || !res.Recorded {
		t.Fatalf("deny: %+v, %v", res, err)
	}
	if v := <-verdicts; v.Approved || v.Reason != "not during business hours" {
		t.Fatalf("verdict %+v", v)
	}
	if _, err := ta.client.Decide(ctx, id, true, "", alice); !errors.Is(err, policy.ErrNoSuchApproval) {
		t.Fatalf("decide after the end: %v", err)
	}
}

// TestAPIPartialVote: with min 2, the first vote is recorded by the API
// (final=false, on the hold's session, the approver and calling process
// named), the second ends the hold; the same approver cannot vote twice.
func TestAPIPartialVote(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	alice := ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})
	bob := ta.is.Token(t, map[string]any{"sub": "bob", "groups": []string{"dba", "ops"}})

	id, verdicts := ta.hold(t, "truncate-four-eyes")
	res, err := ta.client.Decide(ctx, id, true, "ok by me", alice)
	if err != nil || res.Final || res.Approvals != 1 || res.Needed != 2 || !res.Recorded {
		t.Fatalf("first vote: %+v, %v", res, err)
	}
	rec := ta.records(t)[res.Seq]
	if rec.Kind != audit.KindApprovalDecision || rec.Session != "S1" || rec.Detail["final"] != "false" ||
		rec.Detail[audit.DetailApproval] != id || rec.Decision == nil || rec.Decision.Action != "allow" ||
		rec.Decision.Rule != "truncate-four-eyes" || rec.Decision.Policy != ta.a.cfgHash || rec.Decision.Reason != "ok by me" ||
		rec.Identity == nil || rec.Identity.Subject != "alice" || rec.Identity.Issuer != ta.is.URL {
		t.Fatalf("partial vote record %+v", rec)
	}
	// SO_PEERCRED names this very process as the caller.
	if rec.Process == nil || rec.Process.Pid != uint32(os.Getpid()) || rec.Process.UID != uint32(os.Getuid()) {
		t.Fatalf("caller process %+v, want pid %d uid %d", rec.Process, os.Getpid(), os.Getuid())
	}
	if exe, _ := os.Executable(); rec.Process.Exe != exe {
		t.Errorf("caller exe %q, want %q", rec.Process.Exe, exe)
	}
	if _, err := ta.client.Decide(ctx, id, true, "", alice); !errors.Is(err, policy.ErrAlreadyDecided) {
		t.Fatalf("second vote by alice: %v", err)
	}
	res, err = ta.client.Decide(ctx, id, true, "", bob)
	if err != nil || !res.Final || !res.Approved || res.Approvals != 2 {
		t.Fatalf("second vote: %+v, %v", res, err)
	}
	if v := <-verdicts; !v.Approved || len(v.By) != 2 {
		t.Fatalf("verdict %+v", v)
	}
}

// TestAPIRefusals: self-approval, an approver outside the group, bad and
// expired tokens and unknown ids are refused with clear errors, each
// recorded as an error record naming the calling process and the reason.
func TestAPIRefusals(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	other := newTestIssuer(t)
	id, verdicts := ta.hold(t, "ddl-review")
	cases := []struct {
		name  string
		id    string
		token string
		want  error
	}{
		{"self-approval", id, ta.is.Token(t, map[string]any{"sub": "ci", "groups": []string{"dba"}}), policy.ErrSelfApproval},
		{"outside-group", id, ta.is.Token(t, map[string]any{"sub": "mallory", "groups": []string{"staff"}}), policy.ErrNotApprover},
		{"no-token", id, "", ErrBadToken},
		{"garbage", id, "not.a.jwt", ErrBadToken},
		{"expired", id, ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}, "exp": time.Now().Add(-time.Minute).Unix()}), ErrTokenExpired},
		{"wrong-audience", id, ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}, "aud": "other"}), ErrBadToken},
		{"untrusted-issuer", id, other.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}}), ErrBadToken},
		{"forged", id, other.Token(t, map[string]any{"iss": ta.is.URL, "sub": "alice", "groups": []string{"dba"}}), ErrBadToken},
		{"no-such-approval", "ap-0000000000000000", ta.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}}), policy.ErrNoSuchApproval},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ta.a.alog.Size()
			_, err := ta.client.Decide(ctx, tc.id, true, "", tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decide = %v, want %v", err, tc.want)
			}
			recs := ta.records(t)[before:]
			if len(recs) != 1 || recs[0].Kind != audit.KindError {
				t.Fatalf("records %+v, want one error record", recs)
			}
			r := recs[0]
			if r.Process == nil || r.Process.Pid != uint32(os.Getpid()) || r.Process.UID != uint32(os.Getuid()) ||
				r.Detail["call"] != "approve" || r.Detail[audit.DetailApproval] != tc.id || !strings.Contains(r.Error, err.Error()) {
				t.Fatalf("refusal record %+v %+v", r, r.Process)
			}
			if tc.id == id && r.Session != "S1" {
				t.Errorf("refusal not tied to the held session: %q", r.Session)
			}
			if tok := tc.token; tok != "" && strings.Contains(r.Error, tok[strings.LastIndexByte(tok, '.')+1:]) {
				t.Error("token signature in the record")
			}
		})
	}
	if hs, _ := ta.client.Approvals(ctx); len(hs) != 1 {
		t.Fatalf("hold ended by refused calls: %+v", hs)
	}
	select {
	case v := <-verdicts:
		t.Fatalf("verdict after refusals only: %+v", v)
	default:
	}
}

// TestAPISocket: the socket is 0600, or 0660 with the tollgate group when
// it exists, and a daemon not running is reported as such.
func TestAPISocket(t *testing.T) {
	ta := newTestAgent(t)
	fi, err := os.Stat(ta.sock)
	if err != nil {
		t.Fatal(err)
	}
	mode, _ := apiSocketMode()
	if os.Geteuid() != 0 && mode == 0o660 {
		// Unprivileged, the socket may not be given to the group.
		mode = fi.Mode().Perm() & 0o660
	}
	if fi.Mode().Perm() != mode || fi.Mode().Perm()&^0o660 != 0 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want %v", fi.Mode(), mode)
	}
	if matches, _ := filepath.Glob(filepath.Join(ta.dir, ".api-sock-*")); len(matches) != 0 {
		t.Fatalf("temporary socket directories left: %v", matches)
	}
	_, err = NewClient(filepath.Join(ta.dir, "absent.sock")).Approvals(context.Background())
	if !errors.Is(err, ErrDaemonNotRunning) {
		t.Fatalf("absent daemon: %v", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/testoidc"
	"github.com/tollgate-dev/tollgate/policy"
)

// approvalPolicy is the policy file of these tests: deploy (an OIDC
// workload, subject "ci") reads and writes; its DDL on pg is held for one
// approver from the dba group; truncate is denied outright.
const approvalPolicy = `identities:
  - name: deploy
    oidc: {issuer: %[1]q, subject: ci}
  - name: dba
    oidc: {issuer: %[1]q, groups: [dba]}
rules:
  - id: deploy-dml
    when: {identities: [deploy], classes: [select, insert, update, delete, set, transaction]}
    action: allow
  - id: ddl-review
    when: {identities: [deploy], targets: [pg], classes: [ddl]}
    action: review
    approvers: {groups: [dba], timeout: %[2]s}
  - id: no-truncate
    when: {classes: [truncate]}
    action: deny
    reason: truncate goes through a migration
`

// approvalSetup is a PostgreSQL target with client_auth oidc whose policy
// lives in a policy_file, and an issuer whose tokens the tests sign.
type approvalSetup struct {
	*pgSetup
	is         *testIssuer
	policyPath string
	deploy     string // the workload's token (subject ci)
}

func newApprovalSetup(t *testing.T, reviewTimeout string) *approvalSetup {
	t.Helper()
	requireRoot(t)
	return newApprovalSetupWith(t, newTestIssuer(t), reviewTimeout)
}

func newApprovalSetupWith(t *testing.T, is *testIssuer, reviewTimeout string) *approvalSetup {
	t.Helper()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, fmt.Appendf(nil, approvalPolicy, is.URL, reviewTimeout), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("oidc:\n  issuers:\n    - url: %q\n      audience: tollgate\npolicy_file: %s\n", is.URL, pol)
	s := &approvalSetup{pgSetup: newPGSetup(t, "oidc", extra), is: is, policyPath: pol}
	s.deploy = is.Token(t, map[string]any{"sub": "ci"})
	return s
}

// tokenFile writes an approver's token to a 0600 file for --token-file.
func (s *approvalSetup) tokenFile(t *testing.T, claims map[string]any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(s.is.Token(t, claims)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs the tollgate CLI against this setup's daemon.
func (s *approvalSetup) cli(args ...string) (string, error) {
	return runTollgate(append(args, "--config", s.d.cfgPath)...)
}

// psqlAs runs psql through interception, logging in with token.
func (s *approvalSetup) psqlAs(t *testing.T, ctx context.Context, token string, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"-X", "-At", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose", "-d", s.pg.dsn("deploy", pgDatabase)}, args...)
	return runClient(t, ctx, s.cgroup, []string{"PGPASSWORD=" + token}, "", "psql", full...)
}

// holds lists the held statements with the CLI.
func (s *approvalSetup) holds(t *testing.T) []policy.Hold {
	t.Helper()
	out, err := exec.Command(tollgateBin, "approvals", "list", "-o", "json", "--config", s.d.cfgPath).Output()
	if err != nil {
		t.Fatalf("approvals list: %v", err)
	}
	var hs []policy.Hold
	if err := json.Unmarshal(out, &hs); err != nil {
		t.Fatalf("approvals list: %v: %s", err, out)
	}
	return hs
}

// waitHold waits until a statement is held and returns it.
func (s *approvalSetup) waitHold(t *testing.T) policy.Hold {
	t.Helper()
	var h policy.Hold
	waitFor(t, "a held statement", func() bool {
		hs := s.holds(t)
		if len(hs) > 0 {
			h = hs[0]
		}
		return len(hs) > 0
	})
	return h
}

// background runs psql in the background and returns its result later.
type psqlResult struct {
	out, errOut string
	err         error
}

func (s *approvalSetup) psqlBackground(t *testing.T, ctx context.Context, token string, args ...string) <-chan psqlResult {
	t.Helper()
	ch := make(chan psqlResult, 1)
	go func() {
		out, errOut, err := s.psqlAs(t, ctx, token, args...)
		ch <- psqlResult{out, errOut, err}
	}()
	return ch
}

func columns(t *testing.T, s *approvalSetup, table string) string {
	t.Helper()
	return strings.TrimSpace(s.pg.psqlSuper(t, pgDatabase, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '"+table+"'"))
}

// TestApprovals: a held ALTER TABLE from psql completes after `tollgate
// approve` with a valid approver token and is refused with 42501 after
// `tollgate deny`; self-approval and an approver outside the group are
// refused, leave the statement held and are recorded.
func TestApprovals(t *testing.T) {
	s := newApprovalSetup(t, "5m")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s.pg.psqlSuper(t, pgDatabase, "CREATE TABLE appr (id int)", "ALTER TABLE appr OWNER TO "+pgScramUser)
	alice := s.tokenFile(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})
	self := s.tokenFile(t, map[string]any{"sub": "ci", "groups": []string{"dba"}})
	outsider := s.tokenFile(t, map[string]any{"sub": "mallory", "groups": []string{"staff"}})
	expired := s.tokenFile(t, map[string]any{"sub": "alice", "groups": []string{"dba"}, "exp": time.Now().Add(-time.Minute).Unix()})

	// Approve.
	res := s.psqlBackground(t, ctx, s.deploy, "-c", "ALTER TABLE appr ADD COLUMN approved int")
	h := s.waitHold(t)
	if h.Rule != "ddl-review" || h.Target != "pg" || h.Requester.Subject != "ci" || !strings.Contains(h.Statement, "ALTER TABLE appr") {
		t.Fatalf("hold %+v", h)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"self-approval", self, "approving one's own statement is not allowed"},
		{"outside the group", outsider, "not an approver"},
		{"expired token", expired, "approver token expired"},
	} {
		out, err := s.cli("approve", h.ID, "--token-file", tc.token)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("%s: approve = %v: %s", tc.name, err, out)
		}
	}
	if hs := s.holds(t); len(hs) != 1 || hs[0].ID != h.ID {
		t.Fatalf("refused approvals changed the hold: %+v", hs)
	}
	out, err := s.cli("approve", h.ID, "--reason", "reviewed migration", "--token-file", alice)
	if err != nil || !strings.Contains(out, "approved "+h.ID) {
		t.Fatalf("approve: %v: %s", err, out)
	}
	r := <-res
	if r.err != nil || !strings.Contains(r.out+r.errOut, "ALTER TABLE") {
		t.Fatalf("held psql after approval: %v\n%s\n%s", r.err, r.out, r.errOut)
	}
	if got := columns(t, s, "appr"); got != "id,approved" {
		t.Fatalf("columns after approval: %q", got)
	}

	// Deny, with a reason.
	res = s.psqlBackground(t, ctx, s.deploy, "-c", "ALTER TABLE appr ADD COLUMN denied int")
	h2 := s.waitHold(t)
	if out, err := s.cli("deny", h2.ID, "--token-file", alice); err == nil || !strings.Contains(out, "--reason") {
		t.Fatalf("deny without a reason: %v: %s", err, out)
	}
	out, err = s.cli("deny", h2.ID, "--reason", "not during the freeze", "--token-file", alice)
	if err != nil || !strings.Contains(out, "denied "+h2.ID) {
		t.Fatalf("deny: %v: %s", err, out)
	}
	r = <-res
	if !strings.Contains(r.errOut, "42501") {
		t.Fatalf("denied psql: %v\n%s\n%s", r.err, r.out, r.errOut)
	}
	if got := columns(t, s, "appr"); got != "id,approved" {
		t.Fatalf("columns after denial: %q", got)
	}
	if out, err := s.cli("approve", h2.ID, "--token-file", alice); err == nil || !strings.Contains(out, "no such approval") {
		t.Fatalf("approve after the end: %v: %s", err, out)
	}

	// The evidence: requests, decisions with approver and reason, the
	// refusals with the caller's process.
	recs := s.d.records()
	var decisions, refusals int
	for _, rec := range recs {
		switch {
		case rec.Kind == audit.KindApprovalDecision && rec.Detail[audit.DetailApproval] == h.ID:
			decisions++
			if rec.Decision == nil || rec.Decision.Action != "allow" || rec.Identity == nil || rec.Identity.Subject != "alice" {
				t.Errorf("approval decision %+v %+v", rec.Decision, rec.Identity)
			}
		case rec.Kind == audit.KindApprovalDecision && rec.Detail[audit.DetailApproval] == h2.ID:
			decisions++
			if rec.Decision == nil || rec.Decision.Action != "deny" || rec.Identity == nil || rec.Identity.Subject != "alice" {
				t.Errorf("denial decision %+v %+v", rec.Decision, rec.Identity)
			}
		case rec.Kind == audit.KindError && rec.Detail["call"] == "approve" && rec.Detail[audit.DetailApproval] == h.ID:
			refusals++
			if rec.Process == nil || rec.Process.Exe != tollgateBin || rec.Session != h.Session {
				t.Errorf("refusal record %+v process %+v", rec, rec.Process)
			}
		}
	}
	if decisions != 2 || refusals != 3 {
		t.Fatalf("%d decision records (want 2), %d refusal records (want 3)", decisions, refusals)
	}
}

// session is an interactive psql session kept open through interception.
type session struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Reader
	n   int
}

func (s *approvalSetup) openSession(t *testing.T, token string) *session {
	t.Helper()
	cmd, cleanup := clientCmd(t, s.cgroup, []string{"PGPASSWORD=" + token}, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=0",
		"-v", "VERBOSITY=verbose", "-d", s.pg.dsn("deploy", pgDatabase))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		pw.Close()
		cleanup()
	})
	return &session{t: t, in: in, out: bufio.NewReader(pr)}
}

// run sends one statement and returns everything psql printed for it.
func (ss *session) run(sql string) string {
	ss.t.Helper()
	ss.n++
	mark := fmt.Sprintf("--done-%d--", ss.n)
	if _, err := fmt.Fprintf(ss.in, "%s\n\\echo %s\n", sql, mark); err != nil {
		ss.t.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := ss.out.ReadString('\n')
		if err != nil {
			ss.t.Fatalf("session output: %v after %q", err, b.String())
		}
		if strings.TrimSpace(line) == mark {
			return b.String()
		}
		b.WriteString(line)
	}
}

// TestGrantWindow: a grant lets the identity run ddl for its window and no
// longer, inside a session that was open before the grant and stays open
// after it expires. The grant's creation, use and expiry are recorded.
func TestGrantWindow(t *testing.T) {
	s := newApprovalSetup(t, "2s")
	alice := s.tokenFile(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})
	ss := s.openSession(t, s.deploy)
	if out := ss.run("SELECT 1;"); strings.TrimSpace(out) != "1" {
		t.Fatalf("session: %q", out)
	}
	// Before the grant, DDL is held, and times out unapproved.
	if out := ss.run("CREATE TABLE before_grant (a int);"); !strings.Contains(out, "57014") {
		t.Fatalf("DDL before the grant: %q", out)
	}
	out, err := s.cli("grant", "create", "--identity", "deploy", "--target", "pg", "--allow", "ddl", "--for", "20s",
		"--reason", "hotfix 7", "-o", "json", "--token-file", alice)
	if err != nil {
		t.Fatalf("grant create: %v: %s", err, out)
	}
	var g agent.GrantInfo
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("grant create output: %v: %s", err, out)
	}
	if out := ss.run("CREATE TABLE in_grant (a int);"); !strings.Contains(out, "CREATE TABLE") {
		t.Fatalf("DDL under the grant: %q", out)
	}
	waitForRecord(t, s.d, "grant expiry", func(r *audit.Record) bool {
		return r.Kind == audit.KindGrant && r.Detail["event"] == "expired" && r.Detail["grant"] == g.ID
	})
	if out := ss.run("CREATE TABLE after_grant (a int);"); !strings.Contains(out, "57014") {
		t.Fatalf("DDL after the grant expired, same session: %q", out)
	}
	for table, want := range map[string]string{"before_grant": "", "in_grant": "a", "after_grant": ""} {
		if got := columns(t, s, table); got != want {
			t.Errorf("table %s: columns %q, want %q", table, got, want)
		}
	}
	var created, used, expired int
	for _, r := range s.d.records() {
		switch {
		case r.Kind == audit.KindGrant && r.Detail["grant"] == g.ID && r.Detail["event"] == "created":
			created++
		case r.Kind == audit.KindGrant && r.Detail["grant"] == g.ID && r.Detail["event"] == "expired":
			expired++
		case r.Kind == audit.KindStatement && r.Decision != nil && r.Decision.Rule == "grant:"+g.ID:
			used++
		}
	}
	if created != 1 || used != 1 || expired != 1 {
		t.Fatalf("grant records: %d created, %d statements under it, %d expired; want 1 each", created, used, expired)
	}
	out, err = s.cli("grant", "list")
	if err != nil || !strings.Contains(out, g.ID) || !strings.Contains(out, "expired") {
		t.Fatalf("grant list: %v: %s", err, out)
	}
}

// waitForRecord waits until the daemon's log holds a record cond matches.
func waitForRecord(t *testing.T, d *daemon, what string, cond func(*audit.Record) bool) *audit.Record {
	t.Helper()
	var found *audit.Record
	deadline := time.Now().Add(2 * time.Minute)
	for found == nil {
		for _, r := range d.records() {
			if cond(r) {
				found = r
			}
		}
		if found == nil {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return found
}

// TestGrantsCLI: grants through the real CLI and daemon: only an approver
// of a covering review rule may grant, and not to themselves; list and
// revoke; every call recorded.
func TestGrantsCLI(t *testing.T) {
	s := newApprovalSetup(t, "5m")
	alice := s.tokenFile(t, map[string]any{"sub": "alice", "groups": []string{"dba"}})
	outsider := s.tokenFile(t, map[string]any{"sub": "mallory", "groups": []string{"staff"}})
	self := s.tokenFile(t, map[string]any{"sub": "ci", "groups": []string{"dba"}})
	create := func(token string, allow string) (string, error) {
		return s.cli("grant", "create", "--identity", "deploy", "--target", "pg", "--allow", allow, "--for", "30m",
			"--reason", "release 12", "--token-file", token)
	}
	for _, tc := range []struct{ name, token, allow, want string }{
		{"outsider", outsider, "ddl", "not authorised to grant this"},
		{"self", self, "ddl", "granting rights to oneself is not allowed"},
		{"uncovered class", alice, "ddl,grant", "no single-approver review rule for grant"},
	} {
		if out, err := create(tc.token, tc.allow); err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("%s: grant create = %v: %s", tc.name, err, out)
		}
	}
	if out, err := s.cli("grant", "create", "--identity", "deploy", "--target", "pg", "--allow", "ddl", "--for", "30m", "--reason", "x"); err == nil ||
		!strings.Contains(out, "--token-file FILE or --device") {
		t.Fatalf("no token: %v: %s", err, out)
	}
	out, err := create(alice, "ddl")
	if err != nil || !strings.Contains(out, "deploy may run ddl on pg until") {
		t.Fatalf("grant create: %v: %s", err, out)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	out, err = s.cli("grant", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "active") || !strings.Contains(out, "release 12") {
		t.Fatalf("grant list: %v: %s", err, out)
	}
	if out, err := s.cli("grant", "revoke", id, "--token-file", outsider); err == nil || !strings.Contains(out, "not authorised") {
		t.Fatalf("revoke by an outsider: %v: %s", err, out)
	}
	if out, err := s.cli("grant", "revoke", id, "--reason", "release done", "--token-file", alice); err != nil || !strings.Contains(out, "revoked "+id) {
		t.Fatalf("revoke: %v: %s", err, out)
	}
	// The grants file survives a restart, revoked.
	s.d.stop()
	s.d.start()
	out, err = s.cli("grant", "list", "-o", "json")
	var gs []agent.GrantInfo
	if err != nil || json.Unmarshal([]byte(out), &gs) != nil || len(gs) != 1 || gs[0].ID != id || gs[0].State != "revoked" {
		t.Fatalf("grant list after restart: %v: %s", err, out)
	}
	var created, revoked, refused int
	for _, r := range s.d.records() {
		switch {
		case r.Kind == audit.KindGrant && r.Detail["event"] == "created" && r.Detail["grant"] == id:
			created++
			if r.Identity == nil || r.Identity.Subject != "alice" || r.Detail["allow"] != "ddl" || r.Detail["for"] != "30m" ||
				r.Detail["identity"] != "deploy" || r.Detail["target"] != "pg" || r.Process == nil || r.Process.Exe != tollgateBin {
				t.Errorf("created record %+v %+v", r.Detail, r.Identity)
			}
		case r.Kind == audit.KindGrant && r.Detail["event"] == "revoked" && r.Detail["grant"] == id:
			revoked++
			if r.Detail["revoke_reason"] != "release done" {
				t.Errorf("revoked record %+v", r.Detail)
			}
		case r.Kind == audit.KindError && strings.HasPrefix(r.Detail["call"], "grant."):
			refused++
			if r.Process == nil || r.Process.Pid == 0 || r.Process.Exe != tollgateBin {
				t.Errorf("refusal record %+v", r.Process)
			}
		}
	}
	if created != 1 || revoked != 1 || refused != 4 {
		t.Fatalf("%d created, %d revoked, %d refused records; want 1, 1, 4", created, revoked, refused)
	}
	// The daemon is not running: the CLI says so.
	s.d.stop()
	if out, err := s.cli("grant", "list"); err == nil || !strings.Contains(out, "daemon not running") {
		t.Fatalf("grant list with the daemon stopped: %v: %s", err, out)
	}
}

// TestPolicyFileReload: a malformed policy file on SIGHUP is rejected,
// saying why (its file and line) in the daemon's log and in the
// policy.load record; the old policy stays in force; a good one is then
// loaded with a new hash covering both files.
func TestPolicyFileReload(t *testing.T) {
	s := newApprovalSetup(t, "5m")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loads := func() []*audit.Record {
		var out []*audit.Record
		for _, r := range s.d.records() {
			if r.Kind == audit.KindPolicyLoad {
				out = append(out, r)
			}
		}
		return out
	}
	first := loads()[0]
	if first.Detail["policy_file"] != s.policyPath || first.Detail["policy_file_hash"] == "" || first.Detail["hash"] != s.d.status().ConfigHash {
		t.Fatalf("first policy.load %+v", first.Detail)
	}

	good, err := os.ReadFile(s.policyPath)
	if err != nil {
		t.Fatal(err)
	}
	// A typo on line 9 of the policy file.
	bad := strings.Replace(string(good), "    action: allow\n", "    acton: allow\n", 1)
	if err := os.WriteFile(s.policyPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	s.d.cmd.Process.Signal(syscall.SIGHUP)
	rej := waitForRecord(t, s.d, "rejected policy.load", func(r *audit.Record) bool {
		return r.Kind == audit.KindPolicyLoad && r.Detail["result"] == "rejected"
	})
	why := s.policyPath + " line 9"
	if !strings.Contains(rej.Error, why) || !strings.Contains(rej.Error, `unknown key "acton"`) || rej.Detail["hash"] != first.Detail["hash"] {
		t.Fatalf("rejected record: %q %+v", rej.Error, rej.Detail)
	}
	waitFor(t, "the reason in the daemon's log", func() bool {
		return strings.Contains(s.d.stderr.String(), "reload rejected") && strings.Contains(s.d.stderr.String(), why)
	})
	if st := s.d.status(); st.ConfigHash != first.Detail["hash"] {
		t.Fatalf("hash in force changed to %s", st.ConfigHash)
	}
	// The old policy is still the one deciding: deploy's reads run, its
	// truncate is denied.
	// (psql exits 1: its last command failed.)
	out, errOut, err := s.psqlAs(t, ctx, s.deploy, "-c", "SELECT 40 + 2", "-c", "TRUNCATE appr_missing")
	if !strings.Contains(out, "42") || !strings.Contains(errOut, "42501") || !strings.Contains(errOut, "no-truncate") {
		t.Fatalf("under the old policy: %v\n%s\n%s", err, out, errOut)
	}

	// A good new policy file is loaded, with a new hash.
	if err := os.WriteFile(s.policyPath, append(good, "  - id: extra\n    when: {classes: [select]}\n    action: allow\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	s.d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new policy in force", func() bool { return s.d.status().ConfigHash != first.Detail["hash"] })
	last := loads()
	if l := last[len(last)-1]; l.Detail["result"] != "loaded" || l.Detail["hash"] != s.d.status().ConfigHash ||
		l.Detail["policy_file_hash"] == first.Detail["policy_file_hash"] || l.Detail["config_hash"] != first.Detail["config_hash"] {
		t.Fatalf("loaded record %+v", l.Detail)
	}
}

// newDeviceIssuer is an OIDC provider that also offers the device
// authorization flow (RFC 8628): discovery and keys as go-oidc's oidctest
// serves them, plus device and token endpoints. The person "signs in"
// after the CLI's first poll; the token is for subject alice in group dba.
func newDeviceIssuer(t *testing.T) (*testIssuer, *atomic.Int32) {
	t.Helper()
	var polls atomic.Int32
	is := testoidc.NewIssuerWith(t, func(mux *http.ServeMux, is *testoidc.Issuer) {
		mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/keys",
				"authorization_endpoint": is.URL + "/auth", "token_endpoint": is.URL + "/token",
				"device_authorization_endpoint": is.URL + "/device", "id_token_signing_alg_values_supported": []string{"RS256"}})
		})
		mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
			if r.FormValue("client_id") != "tollgate" || !strings.Contains(r.FormValue("scope"), "openid") {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			fmt.Fprintf(w, `{"device_code":"dc","user_code":"BDWP-HQPK","verification_uri":"%s/activate","expires_in":120,"interval":1}`, is.URL)
		})
		mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
			if r.FormValue("device_code") != "dc" || r.FormValue("client_id") != "tollgate" {
				http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
				return
			}
			if polls.Add(1) == 1 {
				http.Error(w, `{"error":"authorization_pending"}`, http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, `{"access_token":"x","token_type":"Bearer","id_token":%q}`,
				is.Token(t, map[string]any{"sub": "alice", "groups": []string{"dba"}}))
		})
	})
	return is, &polls
}

// TestDeviceFlowCLI: an approver without a token file signs in with the
// device flow (`--device`): the CLI discovers the endpoint from the
// issuer the config names, shows the URL and code, polls until the
// sign-in, and the daemon accepts the token it got.
func TestDeviceFlowCLI(t *testing.T) {
	requireRoot(t)
	is, polls := newDeviceIssuer(t)
	s := newApprovalSetupWith(t, is, "5m")
	out, err := s.cli("grant", "create", "--identity", "deploy", "--target", "pg", "--allow", "ddl", "--for", "10m",
		"--reason", "device flow", "--device")
	if err != nil || !strings.Contains(out, "BDWP-HQPK") || !strings.Contains(out, is.URL+"/activate") ||
		!strings.Contains(out, "deploy may run ddl on pg") {
		t.Fatalf("grant create --device: %v: %s", err, out)
	}
	if polls.Load() < 2 {
		t.Fatalf("%d polls: the pending sign-in was not waited for", polls.Load())
	}
	rec := waitForRecord(t, s.d, "grant record", func(r *audit.Record) bool { return r.Kind == audit.KindGrant })
	if rec.Identity == nil || rec.Identity.Subject != "alice" || rec.Identity.Issuer != is.URL {
		t.Fatalf("grant by %+v", rec.Identity)
	}
}

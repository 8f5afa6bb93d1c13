// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"os"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func designEngine(t *testing.T) *policy.Engine {
	t.Helper()
	b, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = append(cfg.Rules,
		policy.Rule{ID: "dba-all", When: policy.Conditions{Identities: []string{"dba"}}, Action: policy.ActionAllow},
		policy.Rule{ID: "no-secrets", When: policy.Conditions{Tables: []string{"vault.*", "*.api_keys"}}, Action: policy.ActionDeny},
		policy.Rule{ID: "dba-copy", When: policy.Conditions{Identities: []string{"dba"}, Classes: []policy.Class{policy.ClassCopy}}, Action: policy.ActionMask},
	)
	return policy.NewEngine(&cfg)
}

func TestDecide(t *testing.T) {
	e := designEngine(t)
	c := func(cs ...policy.Class) []policy.Class { return cs }
	for _, tc := range []struct {
		name string
		req  policy.Request
		want policy.Action
		rule string
	}{
		{"report reads", policy.Request{Identities: []string{"nightly-report"}, Target: "orders-db", Classes: c(policy.ClassSelect), Tables: []string{"orders"}}, policy.ActionAllow, "report-reads"},
		{"report reads elsewhere", policy.Request{Identities: []string{"nightly-report"}, Target: "other-db", Classes: c(policy.ClassSelect)}, policy.ActionDeny, ""},
		{"report writes", policy.Request{Identities: []string{"nightly-report"}, Target: "orders-db", Classes: c(policy.ClassInsert)}, policy.ActionDeny, ""},
		{"select with a function call is not only a select", policy.Request{Identities: []string{"nightly-report"}, Target: "orders-db", Classes: c(policy.ClassSelect, policy.ClassFunctionCall)}, policy.ActionDeny, ""},
		{"migration held", policy.Request{Identities: []string{"ci-deploy"}, Target: "orders-db", Classes: c(policy.ClassDDL)}, policy.ActionReview, "deploy-migrations"},
		{"bulk delete denied even for dba", policy.Request{Identities: []string{"dba"}, Target: "orders-db", Classes: c(policy.ClassDelete, policy.ClassDeleteWithoutWhere)}, policy.ActionDeny, "no-bulk-delete"},
		{"dba delete with where", policy.Request{Identities: []string{"dba"}, Target: "orders-db", Classes: c(policy.ClassDelete), Tables: []string{"orders"}}, policy.ActionAllow, "dba-all"},
		{"unknown needs an explicit rule", policy.Request{Identities: []string{"dba"}, Target: "orders-db"}, policy.ActionDeny, ""},
		{"secret table denied by pattern", policy.Request{Identities: []string{"dba"}, Target: "orders-db", Classes: c(policy.ClassSelect), Tables: []string{"vault.tokens"}}, policy.ActionDeny, "no-secrets"},
		{"secret table in any schema", policy.Request{Identities: []string{"dba"}, Target: "orders-db", Classes: c(policy.ClassSelect), Tables: []string{"api_keys"}}, policy.ActionDeny, "no-secrets"},
		{"copy covered by mask rule", policy.Request{Identities: []string{"dba"}, Target: "orders-db", Classes: c(policy.ClassCopyOut)}, policy.ActionMask, "dba-all"},
		{"nobody", policy.Request{Target: "orders-db", Classes: c(policy.ClassSelect)}, policy.ActionDeny, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(tc.req)
			if d.Action != tc.want || d.Rule != tc.rule {
				t.Fatalf("got %s by %q (%s), want %s by %q", d.Action, d.Rule, d.Reason, tc.want, tc.rule)
			}
			if d.Action == policy.ActionDeny && d.Reason == "" {
				t.Fatal("deny without a reason")
			}
			if d.Action == policy.ActionReview && (d.Approvers == nil || len(d.Approvers.Identities) == 0) {
				t.Fatal("review without approvers")
			}
		})
	}
}

// TestDecideOrderIndependent checks that shuffling rules never changes a
// verdict.
func TestDecideOrderIndependent(t *testing.T) {
	b, _ := os.ReadFile("testdata/design.yaml")
	cfg, err := policy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	req := policy.Request{Identities: []string{"ci-deploy", "nightly-report"}, Target: "orders-db", Classes: []policy.Class{policy.ClassDDL, policy.ClassTruncate}}
	want := policy.NewEngine(&cfg).Decide(req)
	for i := 0; i < len(cfg.Rules); i++ {
		cfg.Rules = append(cfg.Rules[1:], cfg.Rules[0])
		if got := policy.NewEngine(&cfg).Decide(req); got.Action != want.Action || got.Rule != want.Rule {
			t.Fatalf("rotation %d: %+v, want %+v", i, got, want)
		}
	}
	if want.Action != policy.ActionDeny || want.Rule != "no-bulk-delete" {
		t.Fatalf("truncate with ddl: %+v", want)
	}
}

// TestDecideCopyDirection: the classifier gives a COPY both the class copy
// and its direction; a rule for the direction alone allows it, a rule for
// copy allows both, and a deny of one direction leaves the other alone.
func TestDecideCopyDirection(t *testing.T) {
	out := []policy.Class{policy.ClassCopy, policy.ClassCopyOut}
	in := []policy.Class{policy.ClassCopy, policy.ClassCopyIn}
	for _, tc := range []struct {
		name    string
		rules   []policy.Rule
		classes []policy.Class
		want    policy.Action
	}{
		{"copy_out rule, COPY TO", []policy.Rule{{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopyOut}}}}, out, policy.ActionAllow},
		{"copy_out rule, COPY FROM", []policy.Rule{{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopyOut}}}}, in, policy.ActionDeny},
		{"copy rule, COPY FROM", []policy.Rule{{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopy}}}}, in, policy.ActionAllow},
		{"deny copy_in, COPY TO", []policy.Rule{
			{ID: "d", Action: policy.ActionDeny, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopyIn}}},
			{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopy}}}}, out, policy.ActionAllow},
		{"deny copy, COPY TO", []policy.Rule{
			{ID: "d", Action: policy.ActionDeny, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopy}}},
			{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassCopyOut}}}}, out, policy.ActionDeny},
	} {
		e := policy.NewEngine(&policy.Config{Rules: tc.rules})
		if d := e.Decide(policy.Request{Classes: tc.classes}); d.Action != tc.want {
			t.Errorf("%s: %s (rule %q), want %s", tc.name, d.Action, d.Rule, tc.want)
		}
	}
}

// TestDecideEmpty: an empty statement is allowed even by default deny and
// by a rule without classes that denies; only rules naming the class empty
// judge it.
func TestDecideEmpty(t *testing.T) {
	empty := []policy.Class{policy.ClassEmpty}
	e := policy.NewEngine(&policy.Config{Rules: []policy.Rule{
		{ID: "deny-all-for-bot", When: policy.Conditions{Identities: []string{"bot"}}, Action: policy.ActionDeny},
	}})
	for _, ids := range [][]string{nil, {"bot"}} {
		if d := e.Decide(policy.Request{Identities: ids, Classes: empty}); d.Action != policy.ActionAllow || d.Rule != "" {
			t.Errorf("%v: %+v", ids, d)
		}
	}
	e = policy.NewEngine(&policy.Config{Rules: []policy.Rule{
		{ID: "no-pings-for-bot", When: policy.Conditions{Identities: []string{"bot"}, Classes: empty}, Action: policy.ActionDeny},
		{ID: "pings", When: policy.Conditions{Classes: empty}, Action: policy.ActionAllow},
	}})
	if d := e.Decide(policy.Request{Identities: []string{"bot"}, Classes: empty}); d.Action != policy.ActionDeny || d.Rule != "no-pings-for-bot" {
		t.Errorf("named deny: %+v", d)
	}
	if d := e.Decide(policy.Request{Identities: []string{"app"}, Classes: empty}); d.Action != policy.ActionAllow || d.Rule != "pings" {
		t.Errorf("named allow: %+v", d)
	}
}

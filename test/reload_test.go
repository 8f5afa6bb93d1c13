// SPDX-License-Identifier: Apache-2.0

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestReload sends SIGHUP: a valid new config adds a target without a
// restart; an invalid one is rejected and the old config stays in force.
// Both outcomes are recorded.
func TestReload(t *testing.T) {
	s := newInterceptSetup(t)
	second := echoServer(t, "tcp4", "127.0.0.3:0", "second")

	res, _ := runChild(t, s.cgroup, "tcp", second.String(), "x")
	if r := res[0]; r.Remote != second.String() {
		t.Fatalf("second service intercepted before it was configured: %+v", r)
	}

	cfg := s.d.cfg
	cfg.Targets += fmt.Sprintf("\n  - name: second\n    protocol: tcp\n    match: [\"127.0.0.3:%d\"]", second.Port)
	tmp := writeConfig(t, cfg)
	b, _ := os.ReadFile(tmp)
	if err := os.WriteFile(s.d.cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "second target in status", func() bool { return len(s.d.status().Targets) == 2 })
	res, _ = runChild(t, s.cgroup, "tcp", second.String(), "y")
	if r := res[0]; r.Err != "" || r.Reply != "second\ny" || r.Remote == second.String() {
		t.Fatalf("second service after reload: %+v", r)
	}

	if err := os.WriteFile(s.d.cfgPath, append(b, "bogus_key: 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	s.d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "rejected policy.load record", func() bool {
		for _, r := range s.d.records() {
			if r.Kind == audit.KindPolicyLoad && r.Detail["result"] == "rejected" {
				return true
			}
		}
		return false
	})
	res, _ = runChild(t, s.cgroup, "tcp", second.String(), "z")
	if r := res[0]; r.Err != "" || r.Reply != "second\nz" || r.Remote == second.String() {
		t.Fatalf("after rejected reload: %+v", r)
	}
	loaded := 0
	for _, r := range s.d.records() {
		if r.Kind == audit.KindPolicyLoad && r.Detail["result"] == "loaded" {
			loaded++
		}
	}
	if loaded != 2 {
		t.Fatalf("%d loaded policy.load records, want 2", loaded)
	}
}

// TestLogFormat starts the daemon with log.format json in its config and
// no --log-format flag: every line it writes is a JSON object.
func TestLogFormat(t *testing.T) {
	requireRoot(t)
	cfg := newDaemonConfig(t, "", "")
	cfg.Targets = "log:\n  format: json\n"
	d := startDaemon(t, cfg)
	d.stop()
	lines := strings.Split(strings.TrimSpace(d.stderr.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("daemon log: %q", d.stderr.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", l, err)
		}
	}
}

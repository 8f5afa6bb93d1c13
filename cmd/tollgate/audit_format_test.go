// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

func TestFormatRecordStatement(t *testing.T) {
	b, err := audit.Encode(&audit.Record{V: audit.SchemaVersion, Log: "tollgate/h/1", Seq: 14, Time: time.Unix(0, 0).UTC(),
		Kind: audit.KindStatement, Session: "s1", Identity: &audit.Identity{Name: "demo-job", Method: "process"},
		Statement: &audit.Statement{Text: "DELETE FROM orders", Classes: []string{"delete", "delete_without_where"}},
		Decision:  &audit.Decision{Action: "deny", Rule: "no-bulk-delete", Reason: "needs a ticket"}})
	if err != nil {
		t.Fatal(err)
	}
	got := formatRecord(b)
	for _, want := range []string{"identity=demo-job", "decision=deny rule=no-bulk-delete", `why="needs a ticket"`,
		`classes=delete,delete_without_where sql="DELETE FROM orders"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

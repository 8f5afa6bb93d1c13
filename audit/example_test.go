// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tollgate-dev/tollgate/audit"
)

func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{HostID: "host-a"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// Append returns once the record is durable; only then may the
	// statement be forwarded.
	seq, err := l.Append(context.Background(), &audit.Record{
		Kind:      audit.KindStatement,
		Session:   "s1",
		Statement: &audit.Statement{Text: "SELECT 1"},
		Decision:  &audit.Decision{Action: "allow", Rule: "report-reads"},
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, audit.ErrUnwritable): refuse the statement
	}

	entries, err := l.Read(seq, 1)
	if err != nil {
		log.Fatal(err)
	}
	r, err := entries[0].Record()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(seq, r.Kind, r.Statement.Text, r.Log == l.ID())
	// Output: 0 statement SELECT 1 true
}

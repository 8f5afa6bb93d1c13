// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// BenchmarkDecodePrepare is the collector's CPU per batch before the
// database: decoding the body, decoding each record and hashing its leaf.
func BenchmarkDecodePrepare(b *testing.B) {
	dir := b.TempDir()
	k, _ := audit.LoadOrCreateHostKey(dir, "h")
	l, err := audit.Open(filepath.Join(dir, "a.db"), audit.Options{HostID: "h", Key: k, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var rs []*audit.Record
	for i := 0; i < 4096; i++ {
		rs = append(rs, &audit.Record{Kind: audit.KindStatement, Session: "01JDBENCH", Target: "orders-db",
			Statement: &audit.Statement{Text: "SELECT * FROM orders WHERE id = $1", Fingerprint: "0a42922fab0bd73f", Classes: []string{"select"}},
			Decision:  &audit.Decision{Action: "allow", Rule: "reads"}, Detail: map[string]string{"pad": strings.Repeat("x", 250)}})
	}
	if err := l.AppendAll(context.Background(), rs); err != nil {
		b.Fatal(err)
	}
	es, _ := l.Read(0, 4096)
	root, _ := l.Root(4096)
	cp, _ := audit.SignCheckpoint(l.ID(), 4096, root, time.Now(), k.Signer)
	req := AddEntriesRequest{Origin: l.ID(), Checkpoint: cp.Note}
	for _, e := range es {
		req.Entries = append(req.Entries, e.Bytes)
	}
	body, _ := json.Marshal(req)
	// Entries go into one reused buffer, as the server decodes them.
	arena := make([]byte, 0, base64.StdEncoding.DecodedLen(len(body)))
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		r, err := decodeAddEntries(body, arena)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := prepare(r.Origin, 0, r.Entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4096), "ns/record")
}

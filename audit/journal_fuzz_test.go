// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"testing"
)

// frameBytes encodes records as journal frames.
func frameBytes(recs ...jrec) []byte {
	var b []byte
	for _, r := range recs {
		b = appendFrame(b, r)
	}
	return b
}

// FuzzScanFrames feeds arbitrary bytes after a valid header to the journal
// reader: it never panics, and what it returns is a run of frames with
// consecutive seqs from `from` whose bytes are in the input.
func FuzzScanFrames(f *testing.F) {
	f.Add(frameBytes(jrec{seq: 5, data: []byte(`{"a":1}`)}, jrec{seq: 6, data: []byte(`{"b":2}`)}), uint64(5))
	f.Add(frameBytes(jrec{seq: 3, data: []byte("x")}, jrec{seq: 4, data: []byte("y")}, jrec{seq: 2, data: []byte("old")}), uint64(4))
	f.Add(frameBytes(jrec{seq: 9, data: []byte("gap")}), uint64(4))
	f.Add([]byte{0, 0, 0, 0xff, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1}, uint64(0))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff}, uint64(0))
	f.Fuzz(func(t *testing.T, frames []byte, from uint64) {
		b := append(journalHeader("tollgate/h/0123456789abcdef"), frames...)
		if err := checkJournalHeader(b, "tollgate/h/0123456789abcdef"); err != nil {
			t.Fatal(err)
		}
		recs, end, err := scanFrames(b, from)
		if err != nil {
			return
		}
		if end < journalHeaderSize || end > int64(len(b)) {
			t.Fatalf("end %d outside [%d, %d]", end, journalHeaderSize, len(b))
		}
		for i, r := range recs {
			if r.seq != from+uint64(i) {
				t.Fatalf("record %d has seq %d, want %d", i, r.seq, from+uint64(i))
			}
			if len(r.data) == 0 || len(r.data) > MaxRecordSize {
				t.Fatalf("record %d of %d bytes", i, len(r.data))
			}
		}
	})
}

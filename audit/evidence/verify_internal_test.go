// SPDX-License-Identifier: Apache-2.0

package evidence

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestVerifyRecordsAcrossChunks reads the same records.jsonl in chunks of
// many sizes, so that records of another log, a garbage line and a gap in
// seq fall at the start, in the middle and at the end of batches: every
// one is reported at its line, and nothing else is.
func TestVerifyRecordsAcrossChunks(t *testing.T) {
	var data []byte
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	other := map[int]bool{7: true, 8: true, 20: true, 33: true, 49: true}
	seq := uint64(0)
	for i := range 50 {
		if i == 40 {
			data = append(data, "not a record\n"...)
			seq++
			continue
		}
		if i == 45 {
			seq++ // a record is missing
		}
		r := &audit.Record{V: audit.SchemaVersion, Log: "tollgate/a/1", Seq: seq, Time: t0.Add(time.Duration(i) * time.Second), Kind: audit.KindError, Session: "s" + strconv.Itoa(i), Error: strings.Repeat("e", i*7)}
		if other[i] {
			r.Log = "tollgate/b/1"
		}
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		data = append(append(data, b...), '\n')
		seq++
	}
	for _, chunk := range []int{64, 100, 301, 1000, 4096, verifyChunk} {
		for _, workers := range []int{1, 3} {
			rep := &VerifyReport{Kinds: map[string]uint64{}}
			v := &verifier{opts: VerifyOptions{Workers: workers}, rep: rep, files: map[string]*bundleFile{}, chunk: chunk}
			sum := v.readRecords(bytes.NewReader(data), int64(len(data)))
			if want := sha256.Sum256(data); !bytes.Equal(sum, want[:]) {
				t.Fatalf("chunk %d: file hash %x, want %x", chunk, sum, want)
			}
			var got []string
			for _, p := range rep.Failures {
				got = append(got, p.String())
			}
			want := []string{
				`records.jsonl line 8 seq 7: record of log "tollgate/b/1" in a bundle of log "tollgate/a/1"`,
				`records.jsonl line 9 seq 8: record of log "tollgate/b/1" in a bundle of log "tollgate/a/1"`,
				`records.jsonl line 21 seq 20: record of log "tollgate/b/1" in a bundle of log "tollgate/a/1"`,
				`records.jsonl line 34 seq 33: record of log "tollgate/b/1" in a bundle of log "tollgate/a/1"`,
				`records.jsonl line 41 seq 40: not a valid record: `,
				`records.jsonl line 46 seq 46: seq 46 where 45 was expected: record 45 is missing (removed) or out of order`,
				`records.jsonl line 50 seq 50: record of log "tollgate/b/1" in a bundle of log "tollgate/a/1"`,
			}
			if len(got) != len(want) {
				t.Fatalf("chunk %d, %d workers: failures\n%s", chunk, workers, strings.Join(got, "\n"))
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Fatalf("chunk %d, %d workers: failure %d is\n%s\nwant\n%s", chunk, workers, i, got[i], want[i])
				}
			}
			if v.recs.lines != 50 || v.recs.firstSession != "s0" || string(v.recs.lastSession) != "s49" {
				t.Fatalf("chunk %d: %d lines, sessions %q to %q", chunk, v.recs.lines, v.recs.firstSession, v.recs.lastSession)
			}
		}
	}
}

// TestKindIndex checks that kindIndex and kinds agree.
func TestKindIndex(t *testing.T) {
	for i, k := range kinds {
		if got := kindIndex([]byte(k)); got != i {
			t.Errorf("kindIndex(%q) = %d, want %d", k, got, i)
		}
	}
	for _, k := range []string{"", "statement ", "Statement", "session", "x"} {
		if got := kindIndex([]byte(k)); got != -1 {
			t.Errorf("kindIndex(%q) = %d, want -1", k, got)
		}
	}
}

// TestVerifyTimeGoesBack: a log written before records were stamped in seq
// order may go back in time; the verifier warns once, naming the first
// such record and counting them, and does not fail.
func TestVerifyTimeGoesBack(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var data []byte
	for i, d := range []time.Duration{0, time.Second, 500 * time.Millisecond, 2 * time.Second, 2 * time.Second, time.Second} {
		r := &audit.Record{V: audit.SchemaVersion, Log: "tollgate/a/1", Seq: uint64(i), Time: t0.Add(d), Kind: audit.KindError, Session: "s"}
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		data = append(append(data, b...), '\n')
	}
	rep := &VerifyReport{Kinds: map[string]uint64{}}
	v := &verifier{opts: VerifyOptions{Workers: 1}, rep: rep, files: map[string]*bundleFile{}, chunk: verifyChunk}
	v.readRecords(bytes.NewReader(data), int64(len(data)))
	v.recs.warnTimeBack()
	if len(rep.Failures) != 0 {
		t.Fatalf("failures: %v", rep.Failures)
	}
	want := "records.jsonl seq 2: 2 record(s) carry a time before the record before them (the first, at this seq, by 500ms)"
	if len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0].String(), want) {
		t.Fatalf("warnings %v, want one starting %q", rep.Warnings, want)
	}
}

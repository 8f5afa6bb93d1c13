// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"context"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
)

// memRecorder keeps records in memory, for the parser's unit tests.
type memRecorder struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (m *memRecorder) Record(_ context.Context, r *audit.Record) error {
	m.RecordEventually(r)
	return nil
}
func (m *memRecorder) RecordEventually(r *audit.Record) {
	m.mu.Lock()
	m.recs = append(m.recs, r)
	m.mu.Unlock()
}

func newTestSFTPLog() (*sftpLog, *memRecorder) {
	rec := &memRecorder{}
	c := &session{s: &Server{opts: Options{Recorder: rec}}}
	return newSFTPLog(c, "0"), rec
}

// packet builds an sftp packet from its fields: byte, uint32, uint64 and
// string values.
func packet(fields ...any) []byte {
	var body []byte
	for _, f := range fields {
		switch v := f.(type) {
		case byte:
			body = append(body, v)
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestSFTPLog follows an upload, a rename and a failed remove, fed in
// pieces of every size as they arrive off the wire.
func TestSFTPLog(t *testing.T) {
	in := [][]byte{
		packet(byte(1), uint32(3)),
		packet(byte(fxpOpen), uint32(1), "/srv/a.bin", uint32(fxfWrite|fxfCreat|fxfTrunc), uint32(0)),
		packet(byte(fxpWrite), uint32(2), "h1", uint64(0), string(make([]byte, 1000))),
		packet(byte(fxpWrite), uint32(3), "h1", uint64(1000), string(make([]byte, 24))),
		packet(byte(fxpClose), uint32(4), "h1"),
		packet(byte(fxpExtended), uint32(5), "posix-rename@openssh.com", "/srv/a.bin", "/srv/b.bin"),
		packet(byte(fxpRemove), uint32(6), "/srv/nope"),
	}
	out := [][]byte{
		packet(byte(2), uint32(3)),
		packet(byte(fxpHandle), uint32(1), "h1"),
		packet(byte(fxpStatus), uint32(2), uint32(0), "", ""),
		packet(byte(fxpStatus), uint32(3), uint32(0), "", ""),
		packet(byte(fxpStatus), uint32(4), uint32(0), "", ""),
		packet(byte(fxpStatus), uint32(5), uint32(0), "", ""),
		packet(byte(fxpStatus), uint32(6), uint32(2), "No such file", ""),
	}
	for _, step := range []int{1, 3, 7, 1 << 20} {
		l, rec := newTestSFTPLog()
		for i := range in {
			for _, dir := range []struct {
				stream string
				b      []byte
			}{{"in", in[i]}, {"out", out[i]}} {
				for b := dir.b; len(b) > 0; {
					n := min(step, len(b))
					l.feed(dir.stream, b[:n])
					b = b[n:]
				}
			}
		}
		var got []string
		for _, r := range rec.recs {
			d := r.Detail
			got = append(got, d["op"]+" "+d["path"]+" "+d["path2"]+" "+d["flags"]+" "+d["bytes_written"]+" "+d["status"])
		}
		want := []string{
			"open /srv/a.bin  write,create,truncate  ok",
			"close /srv/a.bin   1024 ok",
			"rename /srv/a.bin /srv/b.bin   ok",
			"remove /srv/nope    error 2: No such file",
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: records %q, want %q", step, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("step %d: record %d = %q, want %q", step, i, got[i], want[i])
			}
		}
	}
}

// TestSFTPLogBulk follows a download and an upload of packets far larger
// than the part the recorder collects: the byte counts come from the
// length words, the data is never buffered.
func TestSFTPLogBulk(t *testing.T) {
	l, rec := newTestSFTPLog()
	big := string(make([]byte, 255<<10))
	feed := func(stream string, b []byte) {
		for len(b) > 0 {
			n := min(32<<10, len(b))
			l.feed(stream, b[:n])
			b = b[n:]
		}
	}
	feed("in", packet(byte(fxpOpen), uint32(1), "/srv/db.dump", uint32(fxfRead), uint32(0)))
	feed("out", packet(byte(fxpHandle), uint32(1), "h"))
	for i := uint32(0); i < 4; i++ {
		feed("in", packet(byte(fxpRead), 10+i, "h", uint64(i)*uint64(len(big)), uint32(len(big))))
		feed("out", packet(byte(fxpData), 10+i, big))
	}
	feed("in", packet(byte(fxpOpen), uint32(20), "/srv/up.bin", uint32(fxfWrite|fxfCreat), uint32(0)))
	feed("out", packet(byte(fxpHandle), uint32(20), "w"))
	for i := uint32(0); i < 3; i++ {
		feed("in", packet(byte(fxpWrite), 30+i, "w", uint64(i)*uint64(len(big)), big))
		feed("out", packet(byte(fxpStatus), 30+i, uint32(0), "", ""))
	}
	feed("in", packet(byte(fxpClose), uint32(40), "h"))
	feed("out", packet(byte(fxpStatus), uint32(40), uint32(0), "", ""))
	feed("in", packet(byte(fxpClose), uint32(41), "w"))
	feed("out", packet(byte(fxpStatus), uint32(41), uint32(0), "", ""))
	var got []string
	for _, r := range rec.recs {
		got = append(got, r.Detail["op"]+" "+r.Detail["path"]+" "+r.Detail["bytes_read"]+" "+r.Detail["bytes_written"])
	}
	want := []string{"open /srv/db.dump  ", "open /srv/up.bin  ", "close /srv/db.dump 1044480 0", "close /srv/up.bin 0 783360"}
	if !slices.Equal(got, want) {
		t.Fatalf("records %q, want %q", got, want)
	}
	if c := cap(l.in.buf) + cap(l.out.buf); c > 4<<10 {
		t.Fatalf("the recorder holds %d bytes of buffers after 1.7 MiB of file data", c)
	}
}

// TestSFTPLogStops checks that a stream that is not sftp stops the
// itemising with one record, and nothing after.
func TestSFTPLogStops(t *testing.T) {
	l, rec := newTestSFTPLog()
	l.feed("in", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	l.feed("in", packet(byte(fxpRemove), uint32(6), "/srv/x"))
	if len(rec.recs) != 1 || rec.recs[0].Detail["op"] != "unparsed" {
		t.Fatalf("records: %+v", rec.recs)
	}
}

// FuzzSFTPLog feeds arbitrary bytes both ways: no panic, bounded state.
func FuzzSFTPLog(f *testing.F) {
	f.Add(packet(byte(fxpOpen), uint32(1), "/a", uint32(1), uint32(0)), packet(byte(fxpHandle), uint32(1), "h"))
	f.Add(packet(byte(fxpRead), uint32(2), "h", uint64(0), uint32(10)), packet(byte(fxpData), uint32(2), "0123456789"))
	f.Add([]byte{0, 0, 0, 1, 4}, []byte{0, 0, 0, 5, 101, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in, out []byte) {
		l, _ := newTestSFTPLog()
		for i := 0; i < len(in) || i < len(out); i += 5 {
			if i < len(in) {
				l.feed("in", in[i:min(i+5, len(in))])
			}
			if i < len(out) {
				l.feed("out", out[i:min(i+5, len(out))])
			}
		}
		l.flush()
		if len(l.pending) > 4096 || len(l.handles) > 4096 {
			t.Fatal("unbounded state")
		}
		// How the bytes are cut into reads must not change what is
		// recorded: file data is skipped, headers collected, across any
		// boundary.
		var want []string
		for i, step := range []int{1, 7, 300, len(in) + len(out) + 1} {
			l, rec := newTestSFTPLog()
			for _, dir := range []struct {
				stream string
				b      []byte
			}{{"in", in}, {"out", out}} {
				for b := dir.b; len(b) > 0; {
					n := min(step, len(b))
					l.feed(dir.stream, b[:n])
					b = b[n:]
				}
			}
			l.flush()
			got := recordLines(rec)
			if i == 0 {
				want = got
				continue
			}
			if !slices.Equal(got, want) {
				t.Fatalf("fed in steps of %d: %q; in steps of 1: %q", step, got, want)
			}
		}
	})
}

// recordLines renders records' details for comparison, in a stable order.
func recordLines(rec *memRecorder) []string {
	var out []string
	for _, r := range rec.recs {
		keys := slices.Sorted(maps.Keys(r.Detail))
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + r.Detail[k] + " ")
		}
		out = append(out, b.String())
	}
	slices.Sort(out) // flush ranges over a map
	return out
}

// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"context"
	"encoding/binary"
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
	})
}

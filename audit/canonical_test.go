// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// canonicalSamples are records covering every field and escape.
func canonicalSamples() []*Record {
	t0 := time.Date(2026, 11, 26, 14, 0, 0, 123456789, time.UTC)
	return []*Record{
		{V: 1, Log: "tollgate/host-a/0123456789abcdef", Seq: 41, Time: t0, Kind: KindStatement,
			Session: "01JD", Target: "orders-db", Dst: "127.0.0.2:5432",
			Process: &Process{Pid: 4242, UID: 1001, GID: 1001, Comm: "python3", Exe: "/usr/bin/python3.11", Cgroup: "/x"},
			Identity: &Identity{Name: "ci-deploy", Method: "oidc", Issuer: "https://i", Subject: "repo:org/app",
				Groups: []string{"deploy", ""}},
			Statement: &Statement{Text: "DELETE FROM orders WHERE id = $1", Fingerprint: "0a42",
				Classes: []string{"delete"}, Tables: []string{"orders"}},
			Decision: &Decision{Action: "deny", Rule: "r", Policy: "sha256:...", Reason: "no \"bulk\" deletes"}},
		{V: 1, Kind: KindHeartbeat, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{V: 1, Log: "tollgate/h/e", Seq: 7, Kind: KindSessionEnd, Time: t0,
			Session: "s1", Target: "t", Dst: "10.20.0.5:5432", Client: "127.0.0.1:40000", Listener: "127.0.0.1:15432",
			Process: &Process{Pid: 1, Tid: 2, CgroupID: 1234}, Bytes: &Bytes{Up: 10},
			DurationNS: -1500000000, CloseReason: "client close"},
		{V: 1, Log: "l", Seq: 18446744073709551615, Kind: KindAgentStart, Time: t0,
			Identity: &Identity{}, Decision: &Decision{Rule: "r"}, Error: "e",
			Detail: map[string]string{"version": "0.1.0", "config": "sha256:ab", "B": "", "a": "x", "": "empty key"}},
		{V: 1, Log: "l", Kind: KindStatement, Time: time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC),
			Statement: &Statement{Text: "q\"b\\s/\b\f\n\r\t\x00\x01\x1f\x7f <>& \u2028\u2029 é 😀 bad\xff\xfeend",
				Classes: []string{"", "a\nb"}}},
		{V: 1, Log: "l", Kind: "x", Time: t0, Statement: &Statement{}, Bytes: &Bytes{}, Process: &Process{}},
	}
}

func TestDecodeCanonical(t *testing.T) {
	var scratch canonScratch
	for i, r := range append(canonicalSamples(), canonicalSamples()...) {
		b, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeCanonical(b)
		if !ok {
			t.Fatalf("sample %d: canonical encoding not recognised: %s", i, b)
		}
		checkSameAsDecode(t, b, got)
		// The scratch, reused across records, gives the same.
		got, ok = checkCanonical(b, &scratch)
		if !ok {
			t.Fatalf("sample %d: checkCanonical does not recognise %s", i, b)
		}
		checkSameAsDecode(t, b, got)
	}
	// Not canonical, though Decode accepts them.
	for _, s := range []string{
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x" }`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05Z","kind":"x"}`,
		`{"v":1,"log":"l","seq":00,"time":"2026-01-02T03:04:05.000000000Z","kind":"x"}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","session":""}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","target":"a","session":"b"}`,
		`{"v":1,"log":"\u006c","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x"}`,
		`{"v":1,"log":"\/","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x"}`,
		`{"v":1,"log":"\u000A","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x"}`,
		`{"v":1,"log":"\u000a","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x"}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","detail":{"b":"","a":""}}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","detail":{}}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","duration_ns":-0}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","process":{"pid":1,"tid":0,"uid":0,"gid":0}}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","statement":{"classes":[]}}`,
		`{"v":1,"log":"l","seq":0,"time":"0001-01-01T00:00:00.000000000Z","kind":"x"}`,
		`{"v":1,"log":"l","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"x","unknown":1}`,
	} {
		if r, ok := decodeCanonical([]byte(s)); ok {
			t.Errorf("accepted as canonical: %s → %+v", s, r)
		}
		if _, ok := checkCanonical([]byte(s), &scratch); ok {
			t.Errorf("checkCanonical accepted %s", s)
		}
	}
}

// checkSameAsDecode checks that b is r's encoding and that Decode reads b
// as r.
func checkSameAsDecode(t *testing.T, b []byte, r *Record) {
	t.Helper()
	enc, err := Encode(r)
	if err != nil || !bytes.Equal(enc, b) {
		t.Fatalf("decodeCanonical accepted bytes that are not Encode of the result (%v):\n%q\n%q", err, b, enc)
	}
	slow, err := Decode(b)
	if err != nil {
		t.Fatalf("decodeCanonical accepted what Decode rejects (%v): %q", err, b)
	}
	if !slow.Time.Equal(r.Time) {
		t.Fatalf("time %v, Decode says %v", r.Time, slow.Time)
	}
	a, c := *slow, *r
	a.Time, c.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(a, c) {
		t.Fatalf("decodeCanonical and Decode differ on %q:\n%+v\n%+v", b, c, a)
	}
}

// FuzzDecodeCanonical: whatever the fast parser accepts is exactly the
// canonical encoding of what it returns, and Decode agrees.
func FuzzDecodeCanonical(f *testing.F) {
	for _, r := range canonicalSamples() {
		b, _ := Encode(r)
		f.Add(b)
	}
	var scratch canonScratch
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeCanonical(b)
		r2, ok2 := checkCanonical(b, &scratch)
		if ok != ok2 {
			t.Fatalf("decodeCanonical %v, checkCanonical %v on %q", ok, ok2, b)
		}
		if !ok {
			return
		}
		checkSameAsDecode(t, b, r)
		checkSameAsDecode(t, b, r2)
	})
}

// FuzzCanonicalRoundTrip: every encoding is recognised as canonical.
func FuzzCanonicalRoundTrip(f *testing.F) {
	f.Add("SELECT 1", "k", "v", uint64(3), int64(-5), uint32(0))
	f.Add("\x00\n\"\\\xff\u2028<>&", "\u00e9", "", uint64(1)<<63, int64(1)<<62, uint32(1)<<31)
	f.Fuzz(func(t *testing.T, text, key, val string, seq uint64, dur int64, pid uint32) {
		r := &Record{V: 1, Log: val, Seq: seq, Kind: Kind("k" + key), Time: time.Unix(int64(seq%1e10), int64(pid)).UTC(),
			Session: text, DurationNS: dur, Process: &Process{Pid: pid, Tid: pid / 2, Comm: key},
			Statement: &Statement{Text: text, Tables: []string{val, key}},
			Detail:    map[string]string{key: val, text: key}}
		b, err := Encode(r)
		if err != nil {
			return // invalid UTF-8 detail key
		}
		got, ok := decodeCanonical(b)
		if !ok {
			t.Fatalf("encoding not recognised as canonical: %q", b)
		}
		checkSameAsDecode(t, b, got)
	})
}

func BenchmarkDecodeCanonical(b *testing.B) {
	r := canonicalSamples()[0]
	enc, _ := Encode(r)
	b.SetBytes(int64(len(enc)))
	b.Run("canonical", func(b *testing.B) {
		for b.Loop() {
			if _, ok := decodeCanonical(enc); !ok {
				b.Fatal("not canonical")
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		var s canonScratch
		for b.Loop() {
			if _, ok := checkCanonical(enc, &s); !ok {
				b.Fatal("not canonical")
			}
		}
	})
	// The records of BenchmarkVerify's bundle (audit/evidence, made of
	// evidencetest.BenchRecord, the same record).
	br := benchRecord(15662)
	br.Seq, br.Session = 100, "sess-1-1"
	benc, err := Encode(br)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("check-bench-record", func(b *testing.B) {
		b.SetBytes(int64(len(benc)))
		var s canonScratch
		c0 := cpuTime()
		for b.Loop() {
			if _, ok := checkCanonical(benc, &s); !ok {
				b.Fatal("not canonical")
			}
		}
		// The machine may be shared: CPU time is the stable figure.
		b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCanonicalUint checks the integer parser at the limits: the largest
// value of each width is accepted, one more, a sign, a leading zero or no
// digit at all is not.
func TestCanonicalUint(t *testing.T) {
	for _, c := range []struct {
		in   string
		bits int
		want uint64
		ok   bool
	}{
		{"0", 64, 0, true},
		{"7", 32, 7, true},
		{"4294967295", 32, 1<<32 - 1, true},
		{"4294967296", 32, 0, false},
		{"18446744073709551615", 64, 1<<64 - 1, true},
		{"18446744073709551616", 64, 0, false},
		{"99999999999999999999", 64, 0, false},
		{"184467440737095516150", 64, 0, false},
		{"01", 64, 0, false},
		{"00", 64, 0, false},
		{"", 64, 0, false},
		{"-1", 64, 0, false},
		{"+1", 64, 0, false},
	} {
		p := canonParser{b: c.in + ","}
		v, err := p.uint(c.bits)
		if (err == nil) != c.ok || c.ok && (v != c.want || p.i != len(c.in)) {
			t.Errorf("uint(%q, %d) = %d, %v (at %d)", c.in, c.bits, v, err, p.i)
		}
	}
}

// TestParseCanonicalTime checks the time parser against package time at the
// edges: month ends, leap years, the zero time and the years Encode allows.
func TestParseCanonicalTime(t *testing.T) {
	for _, s := range []string{
		"2024-02-29T00:00:00.000000000Z", "2023-02-29T00:00:00.000000000Z", "1900-02-29T00:00:00.000000000Z",
		"2000-02-29T00:00:00.000000000Z", "2026-04-31T12:00:00.000000000Z", "2026-04-30T23:59:59.999999999Z",
		"2026-12-31T23:59:59.999999999Z", "2026-13-01T00:00:00.000000000Z", "2026-00-10T00:00:00.000000000Z",
		"2026-01-00T00:00:00.000000000Z", "2026-01-32T00:00:00.000000000Z", "0001-01-01T00:00:00.000000000Z",
		"0001-01-01T00:00:00.000000001Z", "0000-01-01T00:00:00.000000000Z", "9999-12-31T23:59:59.999999999Z",
		"2026-01-01T24:00:00.000000000Z", "2026-01-01T00:60:00.000000000Z", "2026-01-01T00:00:60.000000000Z",
		"2026-1-01T00:00:00.0000000000Z", "2026-01-01T00:00:00.00000000aZ",
	} {
		got, ok := parseCanonicalTime(s)
		want, err := time.Parse(timeLayout, s)
		wantOK := err == nil && checkTime(want) == nil && want.Format(timeLayout) == s
		if ok != wantOK || ok && !got.Equal(want) {
			t.Errorf("parseCanonicalTime(%q) = %v, %v; time.Parse gives %v, %v", s, got, ok, want, wantOK)
		}
	}
}

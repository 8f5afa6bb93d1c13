// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

var goldenTime = time.Date(2026, 11, 26, 14, 0, 0, 123456789, time.UTC)

// designRecord is the example record of DESIGN.md.
func designRecord() *audit.Record {
	return &audit.Record{
		V:       1,
		Log:     "tollgate/host-a/0123456789abcdef",
		Seq:     41,
		Time:    goldenTime,
		Kind:    audit.KindStatement,
		Session: "01JD...",
		Target:  "orders-db",
		Dst:     "127.0.0.2:5432",
		Process: &audit.Process{Pid: 4242, UID: 1001, GID: 1001, Comm: "python3",
			Exe: "/usr/bin/python3.11", Cgroup: "/system.slice/nightly.service"},
		Identity: &audit.Identity{Name: "ci-deploy", Method: "oidc", Issuer: "https://...",
			Subject: "repo:org/app", Groups: []string{"deploy"}},
		Statement: &audit.Statement{Text: "DELETE FROM orders WHERE id = $1", Fingerprint: "0a42922fab0bd73f",
			Classes: []string{"delete"}, Tables: []string{"orders"}},
		Decision: &audit.Decision{Action: "allow", Rule: "deploy-writes", Policy: "sha256:..."},
	}
}

func TestEncodeGolden(t *testing.T) {
	tests := []struct {
		name string
		rec  *audit.Record
		want string
	}{
		{
			name: "design example",
			rec:  designRecord(),
			want: `{"v":1,"log":"tollgate/host-a/0123456789abcdef","seq":41,"time":"2026-11-26T14:00:00.123456789Z",` +
				`"kind":"statement","session":"01JD...","target":"orders-db","dst":"127.0.0.2:5432",` +
				`"process":{"pid":4242,"uid":1001,"gid":1001,"comm":"python3","exe":"/usr/bin/python3.11",` +
				`"cgroup":"/system.slice/nightly.service"},` +
				`"identity":{"name":"ci-deploy","method":"oidc","issuer":"https://...","subject":"repo:org/app","groups":["deploy"]},` +
				`"statement":{"text":"DELETE FROM orders WHERE id = $1","fingerprint":"0a42922fab0bd73f",` +
				`"classes":["delete"],"tables":["orders"]},` +
				`"decision":{"action":"allow","rule":"deploy-writes","policy":"sha256:..."}}`,
		},
		{
			name: "minimal, seq 0, whole second",
			rec:  &audit.Record{V: 1, Kind: audit.KindHeartbeat, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
			want: `{"v":1,"log":"","seq":0,"time":"2026-01-02T03:04:05.000000000Z","kind":"heartbeat"}`,
		},
		{
			name: "session end, root process, time converted to UTC",
			rec: &audit.Record{
				V: 1, Log: "tollgate/h/e", Seq: 7, Kind: audit.KindSessionEnd,
				Time:    time.Date(2026, 11, 26, 15, 0, 0, 5, time.FixedZone("CET", 3600)),
				Session: "s1", Target: "orders-db", Dst: "10.20.0.5:5432",
				Client: "127.0.0.1:40000", Listener: "127.0.0.1:15432",
				Process:    &audit.Process{Pid: 1, Tid: 2, CgroupID: 1234},
				Bytes:      &audit.Bytes{Up: 10},
				DurationNS: 1500000000, CloseReason: "client close",
			},
			want: `{"v":1,"log":"tollgate/h/e","seq":7,"time":"2026-11-26T14:00:00.000000005Z","kind":"session.end",` +
				`"session":"s1","target":"orders-db","dst":"10.20.0.5:5432","client":"127.0.0.1:40000",` +
				`"listener":"127.0.0.1:15432","process":{"pid":1,"tid":2,"uid":0,"gid":0,"cgroup_id":1234},` +
				`"bytes":{"up":10,"down":0},"duration_ns":1500000000,"close_reason":"client close"}`,
		},
		{
			name: "agent start, detail keys sorted, error, empty objects",
			rec: &audit.Record{
				V: 1, Log: "l", Seq: 18446744073709551615, Kind: audit.KindAgentStart, Time: goldenTime,
				Identity: &audit.Identity{}, Decision: &audit.Decision{Rule: "r"},
				Error:  "e",
				Detail: map[string]string{"version": "0.1.0", "config": "sha256:ab", "B": "", "a": "x"},
			},
			want: `{"v":1,"log":"l","seq":18446744073709551615,"time":"2026-11-26T14:00:00.123456789Z","kind":"agent.start",` +
				`"identity":{},"decision":{"rule":"r"},"error":"e",` +
				`"detail":{"B":"","a":"x","config":"sha256:ab","version":"0.1.0"}}`,
		},
		{
			name: "string escaping",
			rec: &audit.Record{
				V: 1, Log: "l", Kind: audit.KindStatement, Time: goldenTime,
				Statement: &audit.Statement{
					Text:    "q\"b\\s/\b\f\n\r\t\x00\x01\x1f\x7f <>& \u2028\u2029 é 😀 bad\xff\xfeend",
					Classes: []string{"", "a\nb"},
				},
			},
			want: `{"v":1,"log":"l","seq":0,"time":"2026-11-26T14:00:00.123456789Z","kind":"statement",` +
				`"statement":{"text":"q\"b\\s/\b\f\n\r\t\u0000\u0001\u001f` + "\x7f <>& \u2028\u2029 é 😀 bad\ufffd\ufffdend" + `",` +
				`"classes":["","a\nb"]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := audit.Encode(tt.rec)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode:\n got %s\nwant %s", got, tt.want)
			}
			// The golden bytes decode, and re-encode to themselves.
			r, err := audit.Decode(got)
			if err != nil {
				t.Fatalf("Decode(golden): %v", err)
			}
			again, err := audit.Encode(r)
			if err != nil {
				t.Fatalf("Encode(Decode(golden)): %v", err)
			}
			if string(again) != tt.want {
				t.Errorf("Encode(Decode(golden)):\n got %s\nwant %s", again, tt.want)
			}
		})
	}
}

func TestEncodeDeterministic(t *testing.T) {
	r := designRecord()
	r.Detail = map[string]string{}
	for i := range 50 {
		r.Detail[strings.Repeat("k", i+1)] = "v"
	}
	first, err := audit.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		got, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(first) {
			t.Fatalf("encoding changed between calls:\n%s\n%s", first, got)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	r := designRecord()
	r.Client, r.Listener = "127.0.0.1:1", "127.0.0.1:2"
	r.Bytes = &audit.Bytes{Up: 1, Down: 2}
	r.DurationNS = 3
	r.CloseReason, r.Error = "timeout", "boom"
	r.Detail = map[string]string{"version": "1"}
	r.Process.Tid, r.Process.CgroupID = 9, 10
	b, err := audit.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Decode(Encode(r)) = %+v, want %+v", got, r)
	}
}

func TestEncodeInvalid(t *testing.T) {
	ok := func() *audit.Record {
		return &audit.Record{V: 1, Kind: audit.KindError, Time: goldenTime}
	}
	tests := []struct {
		name   string
		modify func(r *audit.Record)
	}{
		{"version 0", func(r *audit.Record) { r.V = 0 }},
		{"version 2", func(r *audit.Record) { r.V = 2 }},
		{"no kind", func(r *audit.Record) { r.Kind = "" }},
		{"no time", func(r *audit.Record) { r.Time = time.Time{} }},
		{"year 10000", func(r *audit.Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"negative year", func(r *audit.Record) { r.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"invalid detail key", func(r *audit.Record) { r.Detail = map[string]string{"\xff": "a", "\xfe": "b"} }},
		{"too large", func(r *audit.Record) { r.Error = strings.Repeat("x", audit.MaxRecordSize) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.modify(r)
			if _, err := audit.Encode(r); !errors.Is(err, audit.ErrInvalidRecord) {
				t.Errorf("Encode = %v, want ErrInvalidRecord", err)
			}
		})
	}
	if _, err := audit.Encode(ok()); err != nil {
		t.Errorf("Encode(valid) = %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	const tm = `"time":"2026-11-26T14:00:00.123456789Z"`
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"version 2", `{"v":2,"kind":"x",` + tm + `}`, audit.ErrUnknownVersion},
		{"version 0", `{"v":0,"kind":"x",` + tm + `}`, audit.ErrUnknownVersion},
		{"version 2 with other schema", `{"v":2,"seq":"forty-one"}`, audit.ErrUnknownVersion},
		{"no version", `{"kind":"x",` + tm + `}`, audit.ErrUnknownVersion},
		{"empty object", `{}`, audit.ErrUnknownVersion},
		{"version float", `{"v":1.0,"kind":"x",` + tm + `}`, audit.ErrMalformed},
		{"version exponent", `{"v":1e0,"kind":"x",` + tm + `}`, audit.ErrMalformed},
		{"version string", `{"v":"1","kind":"x",` + tm + `}`, audit.ErrMalformed},
		{"version null", `{"v":null,"kind":"x",` + tm + `}`, audit.ErrMalformed},
		{"empty", ``, audit.ErrMalformed},
		{"garbage", `garbage`, audit.ErrMalformed},
		{"null", `null`, audit.ErrMalformed},
		{"array", `[{"v":1}]`, audit.ErrMalformed},
		{"truncated", `{"v":1,"kind":"x",` + tm, audit.ErrMalformed},
		{"trailing data", `{"v":1,"kind":"x",` + tm + `}{}`, audit.ErrMalformed},
		{"trailing garbage", `{"v":1,"kind":"x",` + tm + `} x`, audit.ErrMalformed},
		{"no kind", `{"v":1,` + tm + `}`, audit.ErrMalformed},
		{"no time", `{"v":1,"kind":"x"}`, audit.ErrMalformed},
		{"bad time", `{"v":1,"kind":"x","time":"26 Nov 2026"}`, audit.ErrMalformed},
		{"duplicate field", `{"v":1,"kind":"x","seq":1,"seq":2,` + tm + `}`, audit.ErrMalformed},
		{"duplicate nested field", `{"v":1,"kind":"x",` + tm + `,"process":{"pid":1,"pid":2}}`, audit.ErrMalformed},
		{"duplicate detail key", `{"v":1,"kind":"x",` + tm + `,"detail":{"a":"1","a":"2"}}`, audit.ErrMalformed},
		{"upper-case field", `{"v":1,"kind":"x","Seq":5,` + tm + `}`, audit.ErrMalformed},
		{"kelvin sign field", `{"v":1,"kind":"x",` + tm + `,"process":{"pid":1},"\u212aind":"y"}`, audit.ErrMalformed},
		{"float pid", `{"v":1,"kind":"x",` + tm + `,"process":{"pid":1.5}}`, audit.ErrMalformed},
		{"negative pid", `{"v":1,"kind":"x",` + tm + `,"process":{"pid":-1}}`, audit.ErrMalformed},
		{"seq overflow", `{"v":1,"kind":"x",` + tm + `,"seq":18446744073709551616}`, audit.ErrMalformed},
		{"invalid UTF-8", "{\"v\":1,\"kind\":\"\xff\"," + tm + "}", audit.ErrMalformed},
		{"deep nesting", `{"v":1,"kind":"x",` + tm + `,"future":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, audit.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := audit.Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%q) = %+v, %v; want %v", tt.in, r, err, tt.want)
			}
		})
	}
}

func TestDecodeVersionErrorIsClear(t *testing.T) {
	_, err := audit.Decode([]byte(`{"v":2}`))
	if err == nil || !strings.Contains(err.Error(), "schema version 2") {
		t.Errorf("Decode(v2) error = %v, want it to name version 2", err)
	}
}

func TestDecodeLenient(t *testing.T) {
	// Unknown fields (schema version 1 may grow), free-form detail keys,
	// whitespace and other time offsets are accepted.
	in := `{ "v": 1, "log": "l", "seq": 3, "time": "2026-11-26T15:00:00.5+01:00", "kind": "grant",
		"new_field": {"x": [1, 2.5, null]}, "detail": {"Config-Hash": "abc"} }`
	r, err := audit.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 26, 14, 0, 0, 500000000, time.UTC)
	if r.Seq != 3 || r.Kind != audit.KindGrant || !r.Time.Equal(want) || r.Detail["Config-Hash"] != "abc" {
		t.Errorf("Decode = %+v", r)
	}
}

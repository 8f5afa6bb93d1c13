// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"errors"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
)

func FuzzDecode(f *testing.F) {
	seed, err := audit.Encode(designRecord())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"v":1,"kind":"x","time":"2026-11-26T14:00:00Z","detail":{"a":"b"},"bytes":{"up":1}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"kind":"\u2028\ud800","time":"0000-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := audit.Decode(b)
		if err != nil {
			if !errors.Is(err, audit.ErrMalformed) && !errors.Is(err, audit.ErrUnknownVersion) {
				t.Fatalf("Decode error %v wraps neither ErrMalformed nor ErrUnknownVersion", err)
			}
			return
		}
		// Whatever decodes can be encoded, and the encoding is a fixed
		// point: it decodes and re-encodes to the same bytes.
		enc, err := audit.Encode(r)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", b, err)
		}
		r2, err := audit.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v; encoding %q", b, err, enc)
		}
		enc2, err := audit.Encode(r2)
		if err != nil {
			t.Fatalf("Encode again: %v", err)
		}
		if string(enc) != string(enc2) {
			t.Fatalf("encoding not a fixed point:\n%q\n%q", enc, enc2)
		}
	})
}

func FuzzEncodeStrings(f *testing.F) {
	f.Add("DELETE FROM t WHERE a = $1", "k", "v")
	f.Add("\x00\n\"\\\xff\u2028<>&", "\u00e9", "")
	f.Fuzz(func(t *testing.T, text, key, val string) {
		r := &audit.Record{V: 1, Kind: audit.KindStatement, Time: goldenTime,
			Statement: &audit.Statement{Text: text, Tables: []string{val}},
			Detail:    map[string]string{key: val}}
		enc, err := audit.Encode(r)
		if err != nil {
			if errors.Is(err, audit.ErrInvalidRecord) {
				return // invalid UTF-8 detail key
			}
			t.Fatal(err)
		}
		for _, c := range enc {
			if c == '\n' {
				t.Fatalf("raw newline in %q", enc)
			}
		}
		got, err := audit.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q): %v", enc, err)
		}
		if want := toValidUTF8(text); got.Statement.Text != want {
			t.Fatalf("text %q came back as %q, want %q", text, got.Statement.Text, want)
		}
		if want := toValidUTF8(val); got.Detail[key] != want {
			t.Fatalf("detail %q came back as %q, want %q", val, got.Detail[key], want)
		}
	})
}

// toValidUTF8 replaces each invalid byte with U+FFFD, as Encode does.
func toValidUTF8(s string) string {
	var out []rune
	for _, r := range s {
		out = append(out, r) // range yields U+FFFD for each invalid byte
	}
	return string(out)
}

// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeAddEntries(t *testing.T) {
	good := `{"origin":"tollgate/h/0123456789abcdef","start":3,"entries":["e30="],"checkpoint":"eA=="}`
	req, err := DecodeAddEntries([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if req.Origin != "tollgate/h/0123456789abcdef" || req.Start != 3 || len(req.Entries) != 1 || string(req.Entries[0]) != "{}" || string(req.Checkpoint) != "x" {
		t.Fatalf("decoded %+v", req)
	}
	many, _ := json.Marshal(AddEntriesRequest{Origin: "o", Entries: bytes.Fields(bytes.Repeat([]byte("x "), MaxRecords+1)), Checkpoint: []byte("x")})
	for _, tc := range []struct {
		name, body string
		want       error
		msg        string
	}{
		{"empty", ``, ErrBadRequest, "EOF"},
		{"not an object", `[]`, ErrBadRequest, "cannot unmarshal"},
		{"truncated", good[:len(good)-5], ErrBadRequest, "unexpected EOF"},
		{"trailing", good + `{}`, ErrBadRequest, "after the JSON object"},
		{"unknown field", strings.Replace(good, `"start"`, `"begin"`, 1), ErrBadRequest, "unknown field"},
		{"negative start", strings.Replace(good, `"start":3`, `"start":-1`, 1), ErrBadRequest, "cannot unmarshal"},
		{"huge start", strings.Replace(good, `"start":3`, `"start":18446744073709551615`, 1), ErrBadRequest, "out of range"},
		{"no origin", strings.Replace(good, `"origin":"tollgate/h/0123456789abcdef",`, ``, 1), ErrBadRequest, "origin missing"},
		{"no checkpoint", strings.Replace(good, `,"checkpoint":"eA=="`, ``, 1), ErrBadRequest, "checkpoint missing"},
		{"bad base64", strings.Replace(good, `"e30="`, `"!!"`, 1), ErrBadRequest, "illegal base64"},
		{"empty entry", strings.Replace(good, `"e30="`, `""`, 1), ErrBadRequest, "entry 0 is empty"},
		{"too many", string(many), ErrTooLarge, "at most 8192"},
		{"too big", strings.Repeat(" ", MaxBodyBytes+1), ErrTooLarge, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeAddEntries([]byte(tc.body))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestDecodeEnroll(t *testing.T) {
	if _, err := DecodeEnroll([]byte(`{"token":"t","host":"h","origin":"o","key":"k"}`)); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"token":"t","host":"h","origin":"o"}`, `{"token":"t","host":"h","origin":"o","key":"k","x":1}`, `nope`} {
		if _, err := DecodeEnroll([]byte(body)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// FuzzDecode feeds arbitrary bodies to both request decoders: they never
// panic, and whatever they accept respects the limits and re-encodes to
// a body they accept again with the same content.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"origin":"tollgate/h/0123456789abcdef","start":3,"entries":["e30="],"checkpoint":"eA=="}`))
	f.Add([]byte(`{"token":"t","host":"h","origin":"o","key":"k"}`))
	f.Add([]byte(`{"origin":"o","start":0,"entries":[],"checkpoint":"eA=="} x`))
	f.Add([]byte(`{"origin":"o","start":0,"entries":[],"checkpoint":"eA=="}`))
	f.Add([]byte(`{"origin":"o","start":01,"entries":["e30=","AA=="],"checkpoint":"eA=="}`))
	f.Add([]byte("{\"origin\":\"o\",\"start\":0,\"entries\":[\"e30=\\nAA\\n\\n\\n\\n==\"],\"checkpoint\":\"eA==\"}"))
	f.Add([]byte("{\"origin\":\"o\",\"start\":0,\"entries\":[\"e30=\nAA\n\n\n==\"],\"checkpoint\":\"eA==\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if fast, ok := fastAddEntries(body, nil); ok {
			var strict AddEntriesRequest
			if err := decodeStrict(body, &strict); err != nil {
				t.Fatalf("fast path accepted what the strict decoder refuses: %v", err)
			}
			if !reflect.DeepEqual(fast, &strict) && !(len(fast.Entries) == 0 && len(strict.Entries) == 0) {
				t.Fatalf("fast path %+v, strict %+v", fast, strict)
			}
			// Decoding into an arena (one that already holds bytes, as a
			// reused one may) gives the same request and leaves those
			// bytes alone.
			arena := append(make([]byte, 0, 3+base64.StdEncoding.DecodedLen(len(body))), "abc"...)
			inArena, ok := fastAddEntries(body, arena)
			if !ok || !reflect.DeepEqual(inArena, fast) || string(arena[:3]) != "abc" {
				t.Fatalf("arena decode %+v (ok %v), plain %+v", inArena, ok, fast)
			}
		}
		if req, err := DecodeAddEntries(body); err == nil {
			if req.Origin == "" || len(req.Checkpoint) == 0 || len(req.Entries) > MaxRecords {
				t.Fatalf("accepted %+v", req)
			}
			b, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodeAddEntries(b)
			if err != nil || again.Start != req.Start || len(again.Entries) != len(req.Entries) {
				t.Fatalf("re-encoded request not accepted alike: %v", err)
			}
		} else if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error without a sentinel: %v", err)
		}
		if req, err := DecodeEnroll(body); err == nil && (req.Token == "" || req.Key == "") {
			t.Fatalf("accepted %+v", req)
		} else if err != nil && !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error without a sentinel: %v", err)
		}
	})
}

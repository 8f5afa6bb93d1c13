// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// maxDecodeDepth bounds the nesting of objects and arrays Decode accepts.
// Records nest three levels deep; the margin leaves room for new fields.
const maxDecodeDepth = 16

// Decode parses stored record bytes. It rejects bytes without a schema
// version or with a version other than SchemaVersion (ErrUnknownVersion), and
// anything that is not a well-formed record (ErrMalformed): invalid UTF-8 or
// JSON, anything but one object, duplicate field names, field names outside
// [a-z0-9_] (the keys of "detail" excepted), wrong types, floats, or a
// missing kind or time. Unknown fields are ignored, since new fields may be
// added to schema version 1.
//
// Decode never re-encodes: the stored bytes, not Encode(Decode(b)), are the
// evidence and the Merkle leaf. Strictness about duplicates and field names
// keeps every reader of the same bytes seeing the same record.
func Decode(b []byte) (*Record, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("decode record: invalid UTF-8: %w", ErrMalformed)
	}
	s, err := scanRecord(b)
	if err != nil {
		return nil, fmt.Errorf("decode record: %w: %w", ErrMalformed, err)
	}
	if s.version == nil {
		return nil, fmt.Errorf("decode record: no schema version: %w", ErrUnknownVersion)
	}
	num, ok := s.version.(json.Number)
	if !ok {
		return nil, fmt.Errorf("decode record: schema version is not a number: %w", ErrMalformed)
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("decode record: schema version %s is not an integer: %w", num, ErrMalformed)
	}
	if v != SchemaVersion {
		return nil, fmt.Errorf("decode record: schema version %d: %w", v, ErrUnknownVersion)
	}
	if s.badKey != "" {
		return nil, fmt.Errorf("decode record: field name %q is not lower-case [a-z0-9_]: %w", s.badKey, ErrMalformed)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode record: %w: %w", ErrMalformed, err)
	}
	if r.Kind == "" {
		return nil, fmt.Errorf("decode record: no kind: %w", ErrMalformed)
	}
	if err := checkTime(r.Time); err != nil {
		return nil, fmt.Errorf("decode record: %w: %w", ErrMalformed, err)
	}
	return &r, nil
}

// scanResult is what scanRecord learned about a record's structure.
type scanResult struct {
	// version is the token after the top-level "v" key (a json.Number
	// for a numeric version); nil if there is none.
	version json.Token
	// badKey is the first field name outside [a-z0-9_], "" if none.
	badKey string
}

// scanFrame is one open object or array during scanRecord.
type scanFrame struct {
	object  bool
	wantKey bool                // object: the next token is a key or '}'
	key     string              // object: the last key read
	keys    map[string]struct{} // object: keys seen, for duplicates
	free    bool                // object: keys are data ("detail"), not field names
}

// scanRecord checks that b is exactly one JSON object without duplicate keys
// at any level and without nesting deeper than maxDecodeDepth, and reports
// the version token and the first key that is not a valid field name.
// encoding/json accepts duplicate keys (the last wins) and matches field
// names case-insensitively; rejecting both here means every JSON parser
// reads a stored record the same way.
func scanRecord(b []byte) (scanResult, error) {
	var res scanResult
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return res, err
	}
	if tok != json.Delim('{') {
		return res, errors.New("not a JSON object")
	}
	stack := []scanFrame{{object: true, wantKey: true, keys: map[string]struct{}{}}}
	for len(stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return res, io.ErrUnexpectedEOF
			}
			return res, err
		}
		top := &stack[len(stack)-1]
		if top.object && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				valueDone(stack)
				continue
			}
			key, ok := tok.(string)
			if !ok {
				return res, fmt.Errorf("unexpected %v where a key belongs", tok)
			}
			if _, dup := top.keys[key]; dup {
				return res, fmt.Errorf("duplicate field %q", key)
			}
			top.keys[key] = struct{}{}
			if !top.free && res.badKey == "" && !isFieldName(key) {
				res.badKey = key
			}
			top.key = key
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDecodeDepth {
				return res, fmt.Errorf("nested deeper than %d", maxDecodeDepth)
			}
			if len(stack) == 1 && top.key == "v" {
				res.version = tok
			}
			if tok == json.Delim('{') {
				free := len(stack) == 1 && top.key == "detail"
				stack = append(stack, scanFrame{object: true, wantKey: true, keys: map[string]struct{}{}, free: free})
			} else {
				stack = append(stack, scanFrame{})
			}
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone(stack)
		default:
			if len(stack) == 1 && top.key == "v" {
				res.version = tok
				if tok == nil {
					res.version = "null"
				}
			}
			valueDone(stack)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return res, errors.New("data after the record")
	}
	return res, nil
}

// valueDone notes that a value ended inside the innermost open frame.
func valueDone(stack []scanFrame) {
	if len(stack) > 0 && stack[len(stack)-1].object {
		stack[len(stack)-1].wantKey = true
	}
}

// isFieldName reports whether s is a record field name: non-empty, only
// lower-case ASCII letters, digits and '_'.
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

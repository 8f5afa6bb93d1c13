// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/policy"
)

// Placeholders. A redacted column value becomes "[MASKED:<rule id>]", a
// redacted detected value "[MASKED:<detector or pattern>]", so a reader
// knows what was there and which rule hid it, and nothing else.
const (
	redactOpen  = "[MASKED:"
	redactClose = "]"
	// oversize names what replaces a value too large to scan.
	oversize = "oversize"
	// hashPrefix starts a hashed value: "hmac:" and hashHexLen hex digits.
	hashPrefix = "hmac:"
	// hashBytes is how much of the HMAC is kept: 64 bits keep accidental
	// collisions negligible for joins over millions of values, while a
	// short value stays readable in a log.
	hashBytes = 8
	// defaultKeep is how many characters partial keeps by default.
	defaultKeep = 4
)

// partialSeparators are kept where partial masks, so the shape of a card
// number, an email or a date stays readable: "**** **** **** 1111".
const partialSeparators = " -.@"

// strength orders styles by how much they hide, for when several rules
// cover one value: the one that hides most wins.
func strength(s policy.MaskStyle) int {
	switch s {
	case policy.MaskRedact:
		return 3
	case policy.MaskHash:
		return 2 // equality still shows
	case policy.MaskPartial:
		return 1 // a few characters still show
	}
	return 0
}

// A rule is one masking entry of the config, compiled for a target.
type rule struct {
	id       string
	index    int // in Masker.rules, for per-rule scratch
	style    policy.MaskStyle
	keep     int
	key      []byte // hash only
	binary   policy.BinaryAction
	columns  []colPattern
	kinds    []int // detectors and patterns, as kinds
	exempt   []string
	redacted string // "[MASKED:<id>]"
}

// stronger reports whether r hides more than o; nil hides nothing.
func (r *rule) stronger(o *rule) bool {
	return o == nil || strength(r.style) > strength(o.style)
}

// macs keeps one HMAC per hash rule, and a buffer for sums, so hashing a
// value allocates nothing.
type macs struct {
	h   []hash.Hash
	sum []byte
}

func (m *macs) get(r *rule) hash.Hash {
	if r.index >= len(m.h) {
		m.h = append(m.h, make([]hash.Hash, r.index+1-len(m.h))...)
	}
	h := m.h[r.index]
	if h == nil {
		h = hmac.New(sha256.New, r.key)
		m.h[r.index] = h
	}
	return h
}

// appendHash appends "hmac:" and the truncated keyed hash of v.
func (r *rule) appendHash(dst, v []byte, m *macs) []byte {
	h := m.get(r)
	h.Reset()
	h.Write(v)
	m.sum = h.Sum(m.sum[:0])
	dst = append(dst, hashPrefix...)
	return hex.AppendEncode(dst, m.sum[:hashBytes])
}

// appendValue appends the masked form of v, a whole column value (what is
// the rule id) or a detected value (what is the detector's name). In JSON
// form the result is a JSON string; otherwise it is text.
func (r *rule) appendValue(dst, v []byte, what string, json bool, m *macs) []byte {
	if json {
		dst = append(dst, '"')
	}
	switch r.style {
	case policy.MaskPartial:
		dst = appendPartial(dst, v, r.keep, json)
	case policy.MaskHash:
		dst = r.appendHash(dst, v, m)
	default:
		dst = append(dst, redactOpen...)
		dst = append(dst, what...)
		dst = append(dst, redactClose...)
	}
	if json {
		dst = append(dst, '"')
	}
	return dst
}

// appendRedacted appends a placeholder naming what, as a JSON string if
// json is set.
func appendRedacted(dst []byte, what string, json bool) []byte {
	if json {
		dst = append(dst, '"')
	}
	dst = append(dst, redactOpen...)
	dst = append(dst, what...)
	dst = append(dst, redactClose...)
	if json {
		dst = append(dst, '"')
	}
	return dst
}

// appendPartial appends v with all but its last few characters replaced by
// '*', one per character, separators kept: "**** **** **** 1111". It keeps
// at most keep characters and at most a third of v, so a short value is
// never given away. A backslash escape (\n, \", \u00e9) counts as one
// character and is never split, so masking inside JSON text or an array
// literal leaves it well-formed. With json set, the kept characters are
// escaped for a JSON string.
func appendPartial(dst, v []byte, keep int, json bool) []byte {
	n := 0
	for i := 0; i < len(v); n++ {
		i += unitLen(v, i)
	}
	keep = min(keep, n/3)
	i := 0
	for u := 0; u < n-keep; u++ {
		l := unitLen(v, i)
		if l == 1 && isPartialSeparator(v[i]) {
			dst = append(dst, v[i])
		} else {
			dst = append(dst, '*')
		}
		i += l
	}
	if !json {
		return append(dst, v[i:]...)
	}
	return appendJSONEscaped(dst, v[i:])
}

func isPartialSeparator(c byte) bool {
	for i := 0; i < len(partialSeparators); i++ {
		if partialSeparators[i] == c {
			return true
		}
	}
	return false
}

// unitLen returns the length of the character at v[i]: a backslash escape,
// a UTF-8 sequence, or one byte of invalid UTF-8.
func unitLen(v []byte, i int) int {
	if v[i] == '\\' && i+1 < len(v) {
		if v[i+1] == 'u' && i+6 <= len(v) && isHex4(v[i+2:i+6]) {
			return 6
		}
		_, l := utf8.DecodeRune(v[i+1:])
		return 1 + l
	}
	if v[i] < utf8.RuneSelf {
		return 1
	}
	_, l := utf8.DecodeRune(v[i:])
	return l
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// appendJSONEscaped appends v escaped for the inside of a JSON string.
func appendJSONEscaped(dst, v []byte) []byte {
	const hexDigits = "0123456789abcdef"
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

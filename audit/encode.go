// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// timeLayout is RFC 3339 in UTC with exactly nine fractional digits, so that
// every instant has exactly one encoding (time.RFC3339Nano drops trailing
// zeros).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// appendTime appends t in timeLayout. It gives the bytes of
// t.UTC().AppendFormat(b, timeLayout) for every instant (years outside
// 0–9999 are left to AppendFormat) at a third of its cost
// (BenchmarkAppendTime: 47 against 140 ns): every record carries a time,
// and in the daemon's profiles formatting it by layout was a fifth of
// encoding a record.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	h, mi, s := t.Clock()
	ns := t.Nanosecond()
	var buf [len(timeLayout)]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			buf[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, y)
	buf[4] = '-'
	put(5, 2, int(mo))
	buf[7] = '-'
	put(8, 2, d)
	buf[10] = 'T'
	put(11, 2, h)
	buf[13] = ':'
	put(14, 2, mi)
	buf[16] = ':'
	put(17, 2, s)
	buf[19] = '.'
	put(20, 9, ns)
	buf[29] = 'Z'
	return append(b, buf[:]...)
}

// Encode returns the canonical encoding of r: one JSON object without
// insignificant whitespace, fields in the fixed order of the Record struct
// (nested objects likewise, Detail keys sorted), integers only, strings
// escaped as described in the package documentation. Equal records always
// give equal bytes.
//
// Encode fails with ErrInvalidRecord if r.V is not SchemaVersion, r.Kind or
// r.Time is missing, or the result would exceed MaxRecordSize.
func Encode(r *Record) ([]byte, error) {
	head, tail, err := encodeSplit(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(head)+20+len(tail))
	b = append(b, head...)
	b = strconv.AppendUint(b, r.Seq, 10)
	return append(b, tail...), nil
}

// encodeSplit returns the canonical encoding of r in two parts around the
// seq value: Encode(r) is head, then r.Seq in decimal, then tail. The writer
// uses it to assign seq inside the commit without encoding there.
func encodeSplit(r *Record) (head, tail []byte, err error) {
	if err := r.validate(); err != nil {
		return nil, nil, fmt.Errorf("encode record: %w", err)
	}
	head = encodeHead(r.V, r.Log)
	if tail, err = encodeTail(r, len(head)); err != nil {
		return nil, nil, err
	}
	return head, tail, nil
}

// encodeHead returns the part of an encoded record before the seq value,
// which depends only on the schema version and the log id.
func encodeHead(v int, log string) []byte {
	head := make([]byte, 0, 32+len(log))
	head = append(head, `{"v":`...)
	head = strconv.AppendInt(head, int64(v), 10)
	head = append(head, `,"log":`...)
	head = appendString(head, log)
	return append(head, `,"seq":`...)
}

// encodeTail returns the part of r's encoding after the seq value, for a
// head of headLen bytes; r is valid (Record.validate).
func encodeTail(r *Record, headLen int) ([]byte, error) {
	// Most records fit without growing the buffer: a statement record
	// with its text, classes and decision is 500 to 900 bytes.
	b := make([]byte, 0, 1024)
	b = append(b, `,"time":"`...)
	b = appendTime(b, r.Time)
	b = append(b, '"')
	b = append(b, `,"kind":`...)
	b = appendString(b, string(r.Kind))
	b = appendStringField(b, "session", r.Session)
	b = appendStringField(b, "target", r.Target)
	b = appendStringField(b, "dst", r.Dst)
	b = appendStringField(b, "client", r.Client)
	b = appendStringField(b, "listener", r.Listener)
	if p := r.Process; p != nil {
		b = append(b, `,"process":{"pid":`...)
		b = strconv.AppendUint(b, uint64(p.Pid), 10)
		b = appendUintField(b, "tid", uint64(p.Tid))
		b = append(b, `,"uid":`...)
		b = strconv.AppendUint(b, uint64(p.UID), 10)
		b = append(b, `,"gid":`...)
		b = strconv.AppendUint(b, uint64(p.GID), 10)
		b = appendStringField(b, "comm", p.Comm)
		b = appendStringField(b, "exe", p.Exe)
		b = appendStringField(b, "cgroup", p.Cgroup)
		b = appendUintField(b, "cgroup_id", p.CgroupID)
		b = append(b, '}')
	}
	if id := r.Identity; id != nil {
		b = append(b, `,"identity":{`...)
		n := len(b)
		b = appendStringField(b, "name", id.Name)
		b = appendStringField(b, "method", id.Method)
		b = appendStringField(b, "issuer", id.Issuer)
		b = appendStringField(b, "subject", id.Subject)
		b = appendStringsField(b, "groups", id.Groups)
		b = closeObject(b, n)
	}
	if s := r.Statement; s != nil {
		b = append(b, `,"statement":{`...)
		n := len(b)
		b = appendStringField(b, "text", s.Text)
		b = appendStringField(b, "fingerprint", s.Fingerprint)
		b = appendStringsField(b, "classes", s.Classes)
		b = appendStringsField(b, "tables", s.Tables)
		b = closeObject(b, n)
	}
	if d := r.Decision; d != nil {
		b = append(b, `,"decision":{`...)
		n := len(b)
		b = appendStringField(b, "action", d.Action)
		b = appendStringField(b, "rule", d.Rule)
		b = appendStringField(b, "policy", d.Policy)
		b = appendStringField(b, "reason", d.Reason)
		b = closeObject(b, n)
	}
	if c := r.Bytes; c != nil {
		b = append(b, `,"bytes":{"up":`...)
		b = strconv.AppendUint(b, c.Up, 10)
		b = append(b, `,"down":`...)
		b = strconv.AppendUint(b, c.Down, 10)
		b = append(b, '}')
	}
	if r.DurationNS != 0 {
		b = append(b, `,"duration_ns":`...)
		b = strconv.AppendInt(b, r.DurationNS, 10)
	}
	b = appendStringField(b, "close_reason", r.CloseReason)
	b = appendStringField(b, "error", r.Error)
	if len(r.Detail) > 0 {
		keys := make([]string, 0, len(r.Detail))
		for k := range r.Detail {
			keys = append(keys, k)
		}
		slices.Sort(keys) // byte order, which is code point order for valid UTF-8
		b = append(b, `,"detail":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, r.Detail[k])
		}
		b = append(b, '}')
	}
	b = append(b, '}')

	// 20 is the longest decimal uint64.
	if headLen+20+len(b) > MaxRecordSize {
		return nil, fmt.Errorf("encode record: %d bytes, limit %d: %w", headLen+len(b), MaxRecordSize, ErrInvalidRecord)
	}
	return b, nil
}

// validate checks what Encode needs and Decode guarantees.
func (r *Record) validate() error {
	if r.V != SchemaVersion {
		return fmt.Errorf("schema version %d, want %d: %w", r.V, SchemaVersion, ErrInvalidRecord)
	}
	if r.Kind == "" {
		return fmt.Errorf("no kind: %w", ErrInvalidRecord)
	}
	if err := checkTime(r.Time); err != nil {
		return err
	}
	for k := range r.Detail {
		// Two invalid keys could encode to the same replaced key and
		// produce a duplicate field, which Decode rejects.
		if !utf8.ValidString(k) {
			return fmt.Errorf("detail key %q is not valid UTF-8: %w", k, ErrInvalidRecord)
		}
	}
	return nil
}

// checkTime rejects times that have no RFC 3339 encoding.
func checkTime(t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("no time: %w", ErrInvalidRecord)
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("time %v outside years 0-9999: %w", t, ErrInvalidRecord)
	}
	return nil
}

// closeObject ends an object whose fields started at n: the fields each
// begin with a comma, so the first one is dropped.
func closeObject(b []byte, n int) []byte {
	if len(b) > n {
		b = append(b[:n], b[n+1:]...)
	}
	return append(b, '}')
}

func appendStringField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendUintField(b []byte, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func appendStringsField(b []byte, name string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with the escaping of RFC 8785
// (JCS): '"' and '\' escaped, \b \t \n \f \r as short escapes, other control
// characters as \u00xx (lower-case hex), everything else (including '<', '>',
// '&', U+2028 and U+2029) as raw UTF-8. Invalid UTF-8 is replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\t':
				b = append(b, '\\', 't')
			case '\n':
				b = append(b, '\\', 'n')
			case '\f':
				b = append(b, '\\', 'f')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = utf8.AppendRune(b, utf8.RuneError)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

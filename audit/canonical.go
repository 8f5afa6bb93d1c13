// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"math/bits"
	"time"
	"unicode/utf8"
	"unsafe"
)

// decodeCanonical parses b if it is exactly the canonical encoding of a
// record (Encode(r) == b for the returned r), and reports false otherwise.
// It is a single pass over the bytes in the fixed field order of Encode,
// about two orders of magnitude faster than Decode, which accepts any
// well-formed JSON: readers of whole logs (verify, replay, report) use it
// first and fall back to Decode. Every record the writer stores is
// canonical.
func decodeCanonical(b []byte) (*Record, bool) {
	// One copy of the record: every unescaped string field is a
	// substring of it, which saves an allocation per field.
	p := canonParser{b: string(b)}
	r := &Record{}
	if err := p.record(r); err != nil || p.i != len(b) {
		return nil, false
	}
	return r, true
}

// canonScratch holds the objects of one record, reused from record to
// record by checkCanonical.
type canonScratch struct {
	r                       Record
	p                       Process
	id                      Identity
	st                      Statement
	d                       Decision
	by                      Bytes
	groups, classes, tables []string
	detail                  map[string]string
}

// checkCanonical reports whether b is a canonical record, like
// decodeCanonical, without allocating: the parsed record lives in s and
// its strings alias b, so it is only valid while b is unchanged and until
// the next call with s.
func checkCanonical(b []byte, s *canonScratch) (*Record, bool) {
	if len(b) == 0 {
		return nil, false
	}
	p := canonParser{b: unsafe.String(unsafe.SliceData(b), len(b)), s: s}
	if err := p.record(&s.r); err != nil || p.i != len(b) {
		return nil, false
	}
	return &s.r, true
}

// CanonicalChecker recognises records in the canonical encoding without
// allocating, for readers that check every record of a log or bundle
// (audit/evidence's verifier, one checker per worker). Its zero value is
// ready to use; it is not safe for concurrent use.
type CanonicalChecker struct{ s canonScratch }

// Check reports whether b is exactly the canonical encoding of a record
// (Encode(r) == b), like DecodeFast without the fallback. The returned
// record lives in c and its strings alias b: it is valid only while b is
// unchanged and until the next Check with c. CanonicalError says why b is
// not canonical.
func (c *CanonicalChecker) Check(b []byte) (*Record, bool) { return checkCanonical(b, &c.s) }

// DecodeFast is Decode for stored records: the same result, much faster for
// records in the canonical encoding (every record the log writes), and
// Decode's answer for anything else.
func DecodeFast(b []byte) (*Record, error) {
	if r, ok := decodeCanonical(b); ok {
		return r, nil
	}
	return Decode(b)
}

// canonParser reads a canonical record from b at i.
type canonParser struct {
	b string
	i int
	s *canonScratch // nil: allocate every object
}

// lit consumes s or fails.
func (p *canonParser) lit(s string) error {
	if len(p.b)-p.i < len(s) || p.b[p.i:p.i+len(s)] != s {
		return ErrNotCanonical
	}
	p.i += len(s)
	return nil
}

// field reports whether the next bytes are `,"name":` and consumes them.
// Most probes fail on the first letter: that test is inlined at the call,
// the rest is not.
func (p *canonParser) field(name string) bool {
	return len(p.b)-p.i > 2 && p.b[p.i+2] == name[0] && p.fieldRest(name)
}

// fieldRest is field once the first letter matched.
func (p *canonParser) fieldRest(name string) bool {
	b, i, n := p.b, p.i, len(name)
	if len(b)-i < n+4 || b[i] != ',' || b[i+1] != '"' || b[i+2+n] != '"' || b[i+3+n] != ':' || b[i+2:i+2+n] != name {
		return false
	}
	p.i = i + n + 4
	return true
}

// firstField is field for the first field of an object (no comma).
func (p *canonParser) firstField(name string) bool {
	n := len(name)
	if len(p.b)-p.i < n+3 || p.b[p.i] != '"' || p.b[p.i+1:p.i+1+n] != name ||
		p.b[p.i+1+n] != '"' || p.b[p.i+2+n] != ':' {
		return false
	}
	p.i += n + 3
	return true
}

// uint parses a canonical decimal unsigned integer (no sign, no leading
// zero) that fits in bits (32 or 64).
func (p *canonParser) uint(bits int) (uint64, error) {
	b, i := p.b, p.i
	start := i
	var v uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		// 20 digits may overflow 64 bits: check as they come.
		if v > (1<<64-1)/10 || v*10 > 1<<64-1-d {
			return 0, ErrNotCanonical
		}
		v = v*10 + d
	}
	p.i = i
	n := i - start
	if n == 0 || n > 1 && b[start] == '0' || bits < 64 && v >= 1<<bits {
		return 0, ErrNotCanonical
	}
	return v, nil
}

// nonZeroUint is uint for fields Encode omits when zero.
func (p *canonParser) nonZeroUint(bits int) (uint64, error) {
	v, err := p.uint(bits)
	if err == nil && v == 0 {
		return 0, ErrNotCanonical
	}
	return v, err
}

// str parses a string in the canonical escaping of appendString: raw valid
// UTF-8 except '"', '\' and control characters, which are escaped as
// \" \\ \b \t \n \f \r or \u00xx (lower-case hex) and no other way.
func (p *canonParser) str() (string, error) {
	b, i := p.b, p.i
	if i >= len(b) || b[i] != '"' {
		return "", ErrNotCanonical
	}
	i++
	start := i
	// Fast path: find the first '"', '\\' or control character 8 bytes
	// at a time; a string without escapes ends there.
	for {
		if len(b)-i < 8 {
			for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
				i++
			}
			break
		}
		if m := specialBytes(load64(b, i)); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		i += 8
	}
	if i < len(b) && b[i] == '"' {
		// The whole record is valid UTF-8 (checked once in record),
		// and a multi-byte sequence cannot contain '"', so the string
		// is too.
		p.i = i + 1
		return b[start:i], nil
	}
	p.i = i
	return p.escapedStr(start)
}

// escapedStr is the rest of str for a string with escapes: b[start:p.i]
// has none.
func (p *canonParser) escapedStr(start int) (string, error) {
	buf := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			// Escapes only add ASCII; the rest is valid (see above).
			p.i++
			return string(buf), nil
		case c < 0x20:
			return "", ErrNotCanonical
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return "", ErrNotCanonical
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 't':
			buf = append(buf, '\t')
		case 'n':
			buf = append(buf, '\n')
		case 'f':
			buf = append(buf, '\f')
		case 'r':
			buf = append(buf, '\r')
		case 'u':
			if len(p.b)-p.i < 4 || p.b[p.i] != '0' || p.b[p.i+1] != '0' {
				return "", ErrNotCanonical
			}
			hi, lo := unhex(p.b[p.i+2]), unhex(p.b[p.i+3])
			if hi < 0 || lo < 0 || hi > 1 {
				return "", ErrNotCanonical
			}
			v := byte(hi<<4 | lo)
			switch v {
			case '\b', '\t', '\n', '\f', '\r':
				return "", ErrNotCanonical // has a short escape
			}
			buf = append(buf, v)
			p.i += 4
		default:
			return "", ErrNotCanonical
		}
	}
	return "", ErrNotCanonical
}

// specialBytes has the high bit set in the byte of w (little-endian) that
// is the first '"', '\\' or byte below 0x20, and possibly in later bytes,
// none in earlier ones; zero if there is none. (Bit tricks from "Bit
// Twiddling Hacks": a byte of x is zero, or below n, where the result has
// its high bit set, exactly for the lowest such byte: borrows only carry
// upwards.)
func specialBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := w ^ (ones * '"')
	backslash := w ^ (ones * '\\')
	return ((quote-ones)&^quote | (backslash-ones)&^backslash | (w-ones*0x20)&^w) & highs
}

// load64 returns the 8 bytes of s at i as a little-endian word (one load
// where the architecture allows it).
func load64(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// unhex decodes a lower-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// nonEmptyStr is str for fields Encode omits when empty.
func (p *canonParser) nonEmptyStr() (string, error) {
	s, err := p.str()
	if err == nil && s == "" {
		return "", ErrNotCanonical
	}
	return s, err
}

// strs reads a non-empty array of strings, appending to out.
func (p *canonParser) strs(out []string) ([]string, error) {
	if err := p.lit("["); err != nil {
		return nil, err
	}
	for {
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if p.i < len(p.b) && p.b[p.i] == ',' {
			p.i++
			continue
		}
		return out, p.lit("]")
	}
}

// optStrs reads an optional non-empty string array field into *dst,
// reusing buf's storage.
func (p *canonParser) optStrs(name string, dst *[]string, buf *[]string, first bool) error {
	ok := false
	if first {
		ok = p.firstField(name)
	} else {
		ok = p.field(name)
	}
	*dst = nil
	if !ok {
		return nil
	}
	var out []string
	if buf != nil {
		out = (*buf)[:0]
	}
	v, err := p.strs(out)
	*dst = v
	if buf != nil {
		*buf = v
	}
	return err
}

// objStr reads an optional string field of an object; first is true until
// the object's first field was read.
func (p *canonParser) objStr(name string, dst *string, first *bool) error {
	var ok bool
	if *first {
		ok = p.firstField(name)
	} else {
		ok = p.field(name)
	}
	if !ok {
		*dst = ""
		return nil
	}
	s, err := p.nonEmptyStr()
	*dst, *first = s, false
	return err
}

// objStrs is objStr for string arrays.
func (p *canonParser) objStrs(name string, dst *[]string, buf *[]string, first *bool) error {
	if err := p.optStrs(name, dst, buf, *first); err != nil {
		return err
	}
	if *dst != nil {
		*first = false
	}
	return nil
}

// record parses a whole canonical record into r, setting every field.
func (p *canonParser) record(r *Record) error {
	*r = Record{}
	// Once for the whole record: str relies on it.
	if !utf8.ValidString(p.b) {
		return ErrNotCanonical
	}
	if err := p.lit(`{"v":1,"log":`); err != nil {
		return err
	}
	r.V = SchemaVersion
	var err error
	if r.Log, err = p.str(); err != nil {
		return err
	}
	if err := p.lit(`,"seq":`); err != nil {
		return err
	}
	seqStart := p.i
	if r.Seq, err = p.uint(64); err != nil {
		return err
	}
	seqDigits := p.i - seqStart
	if err := p.lit(`,"time":"`); err != nil {
		return err
	}
	if len(p.b)-p.i < len(timeLayout)+1 || p.b[p.i+len(timeLayout)] != '"' {
		return ErrNotCanonical
	}
	var ok bool
	if r.Time, ok = parseCanonicalTime(p.b[p.i : p.i+len(timeLayout)]); !ok {
		return ErrNotCanonical
	}
	p.i += len(timeLayout) + 1
	if err := p.lit(`,"kind":`); err != nil {
		return err
	}
	kind, err := p.nonEmptyStr()
	if err != nil {
		return err
	}
	r.Kind = Kind(kind)
	if p.field("session") {
		if r.Session, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("target") {
		if r.Target, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("dst") {
		if r.Dst, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("client") {
		if r.Client, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("listener") {
		if r.Listener, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("process") {
		if r.Process, err = p.process(); err != nil {
			return err
		}
	}
	if p.field("identity") {
		if r.Identity, err = p.identity(); err != nil {
			return err
		}
	}
	if p.field("statement") {
		if r.Statement, err = p.statement(); err != nil {
			return err
		}
	}
	if p.field("decision") {
		if r.Decision, err = p.decision(); err != nil {
			return err
		}
	}
	if p.field("bytes") {
		var c *Bytes
		if p.s != nil {
			c = &p.s.by
		} else {
			c = new(Bytes)
		}
		if err := p.lit(`{"up":`); err != nil {
			return err
		}
		if c.Up, err = p.uint(64); err != nil {
			return err
		}
		if err := p.lit(`,"down":`); err != nil {
			return err
		}
		if c.Down, err = p.uint(64); err != nil {
			return err
		}
		if err := p.lit("}"); err != nil {
			return err
		}
		r.Bytes = c
	}
	if p.field("duration_ns") {
		neg := p.i < len(p.b) && p.b[p.i] == '-'
		if neg {
			p.i++
		}
		v, err := p.nonZeroUint(64)
		if err != nil {
			return err
		}
		switch {
		case !neg && v <= 1<<63-1:
			r.DurationNS = int64(v)
		case neg && v <= 1<<63:
			r.DurationNS = int64(-v)
		default:
			return ErrNotCanonical
		}
	}
	if p.field("close_reason") {
		if r.CloseReason, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("error") {
		if r.Error, err = p.nonEmptyStr(); err != nil {
			return err
		}
	}
	if p.field("detail") {
		if r.Detail, err = p.detail(); err != nil {
			return err
		}
	}
	if err := p.lit("}"); err != nil {
		return err
	}
	// Encode's limit, which counts the seq as 20 digits.
	if len(p.b)-seqDigits+20 > MaxRecordSize {
		return ErrNotCanonical
	}
	return nil
}

func (p *canonParser) process() (*Process, error) {
	var pr *Process
	if p.s != nil {
		pr = &p.s.p
		*pr = Process{}
	} else {
		pr = new(Process)
	}
	if err := p.lit(`{"pid":`); err != nil {
		return nil, err
	}
	v, err := p.uint(32)
	if err != nil {
		return nil, err
	}
	pr.Pid = uint32(v)
	if p.field("tid") {
		if v, err = p.nonZeroUint(32); err != nil {
			return nil, err
		}
		pr.Tid = uint32(v)
	}
	if err := p.lit(`,"uid":`); err != nil {
		return nil, err
	}
	if v, err = p.uint(32); err != nil {
		return nil, err
	}
	pr.UID = uint32(v)
	if err := p.lit(`,"gid":`); err != nil {
		return nil, err
	}
	if v, err = p.uint(32); err != nil {
		return nil, err
	}
	pr.GID = uint32(v)
	if p.field("comm") {
		if pr.Comm, err = p.nonEmptyStr(); err != nil {
			return nil, err
		}
	}
	if p.field("exe") {
		if pr.Exe, err = p.nonEmptyStr(); err != nil {
			return nil, err
		}
	}
	if p.field("cgroup") {
		if pr.Cgroup, err = p.nonEmptyStr(); err != nil {
			return nil, err
		}
	}
	if p.field("cgroup_id") {
		if pr.CgroupID, err = p.nonZeroUint(64); err != nil {
			return nil, err
		}
	}
	return pr, p.lit("}")
}

// scratchStrs returns the reusable storage for a string array, nil
// without scratch.
func (p *canonParser) scratchStrs(f func(*canonScratch) *[]string) *[]string {
	if p.s == nil {
		return nil
	}
	return f(p.s)
}

func (p *canonParser) identity() (*Identity, error) {
	var id *Identity
	if p.s != nil {
		id = &p.s.id
		*id = Identity{}
	} else {
		id = new(Identity)
	}
	if err := p.lit("{"); err != nil {
		return nil, err
	}
	first := true
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"name", &id.Name}, {"method", &id.Method}, {"issuer", &id.Issuer}, {"subject", &id.Subject}} {
		if err := p.objStr(f.name, f.dst, &first); err != nil {
			return nil, err
		}
	}
	if err := p.objStrs("groups", &id.Groups, p.scratchStrs(func(s *canonScratch) *[]string { return &s.groups }), &first); err != nil {
		return nil, err
	}
	return id, p.lit("}")
}

func (p *canonParser) statement() (*Statement, error) {
	var st *Statement
	if p.s != nil {
		st = &p.s.st
		*st = Statement{}
	} else {
		st = new(Statement)
	}
	if err := p.lit("{"); err != nil {
		return nil, err
	}
	first := true
	if err := p.objStr("text", &st.Text, &first); err != nil {
		return nil, err
	}
	if err := p.objStr("fingerprint", &st.Fingerprint, &first); err != nil {
		return nil, err
	}
	if err := p.objStrs("classes", &st.Classes, p.scratchStrs(func(s *canonScratch) *[]string { return &s.classes }), &first); err != nil {
		return nil, err
	}
	if err := p.objStrs("tables", &st.Tables, p.scratchStrs(func(s *canonScratch) *[]string { return &s.tables }), &first); err != nil {
		return nil, err
	}
	return st, p.lit("}")
}

func (p *canonParser) decision() (*Decision, error) {
	var d *Decision
	if p.s != nil {
		d = &p.s.d
		*d = Decision{}
	} else {
		d = new(Decision)
	}
	if err := p.lit("{"); err != nil {
		return nil, err
	}
	first := true
	if err := p.objStr("action", &d.Action, &first); err != nil {
		return nil, err
	}
	if err := p.objStr("rule", &d.Rule, &first); err != nil {
		return nil, err
	}
	if err := p.objStr("policy", &d.Policy, &first); err != nil {
		return nil, err
	}
	if err := p.objStr("reason", &d.Reason, &first); err != nil {
		return nil, err
	}
	return d, p.lit("}")
}

// detail parses a non-empty object of strings with keys in strictly
// increasing byte order.
func (p *canonParser) detail() (map[string]string, error) {
	if err := p.lit("{"); err != nil {
		return nil, err
	}
	var m map[string]string
	if p.s != nil {
		if p.s.detail == nil {
			p.s.detail = map[string]string{}
		}
		m = p.s.detail
		clear(m)
	} else {
		m = map[string]string{}
	}
	var prev string
	for n := 0; ; n++ {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		// Encode sorts the keys by byte value.
		if n > 0 && k <= prev {
			return nil, ErrNotCanonical
		}
		prev = k
		if err := p.lit(":"); err != nil {
			return nil, err
		}
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		m[k] = v
		if p.i < len(p.b) && p.b[p.i] == ',' {
			p.i++
			continue
		}
		return m, p.lit("}")
	}
}

// parseCanonicalTime parses "YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ" (timeLayout)
// into a UTC time, rejecting anything time.Format would not produce and
// times Encode refuses.
func parseCanonicalTime(s string) (time.Time, bool) {
	if len(s) != len(timeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
		s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return time.Time{}, false
	}
	num := func(from, to int) int {
		v := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec, nsec := num(11, 13), num(14, 16), num(17, 19), num(20, 29)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 || nsec < 0 {
		return time.Time{}, false
	}
	// Beyond the month's end (time.Date would normalise it), or the zero
	// time, which Encode refuses; four digits are always within the
	// years Encode allows (checkTime).
	if day > daysIn(month, year) || year == 1 && month == 1 && day == 1 && hour == 0 && minute == 0 && sec == 0 && nsec == 0 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// daysIn returns the number of days of month (1-12) in year, proleptic
// Gregorian like package time.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

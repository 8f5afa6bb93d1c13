// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxKeptBuf bounds the scratch memory a Tally keeps between rows, so one
// huge value does not pin its size for the rest of the result.
const maxKeptBuf = 1 << 20

// A Tally masks the rows of one result with a plan and counts what it
// masked, per column, for the audit record. It holds the buffer masked
// values are written into, so it belongs to one goroutine, and a value it
// wrote is valid until its next call.
type Tally struct {
	p      *Plan
	rows   int64
	buf    []byte
	spans  []span
	macs   macs
	masked []int64 // per column: values replaced by the column rule
	nulled []int64 // per column: values replaced by NULL
	found  []int64 // per column and kind: detected values masked
	row    pgproto3.DataRow
	copy   copyState
}

// NewTally returns a tally for one result (one execution, one COPY).
func (p *Plan) NewTally() *Tally {
	t := &Tally{p: p}
	if p.masks {
		t.masked = make([]int64, p.n)
		t.nulled = make([]int64, p.n)
		t.found = make([]int64, p.n*len(p.s.m.kinds))
	}
	return t
}

// Rows returns how many rows (or COPY lines) the tally has seen.
func (t *Tally) Rows() int64 { return t.rows }

// MaskRow masks row's values in place: a value that changes is replaced by
// a slice of the tally's buffer, valid until the next call. NULLs stay
// NULL; values under a column rule's "nullify" become NULL. It reports
// whether anything changed, so the relay can forward the original bytes
// when nothing did. A row with the wrong number of columns is an
// ErrColumnCount error.
func (t *Tally) MaskRow(row *pgproto3.DataRow) (changed bool, err error) {
	p := t.p
	if len(row.Values) != p.n {
		return false, fmt.Errorf("mask row: %w: %d values, %d columns described", ErrColumnCount, len(row.Values), p.n)
	}
	t.rows++
	if !p.masks {
		return false, nil
	}
	t.resetBuf()
	for i := range p.cols {
		v := row.Values[i]
		c := &p.cols[i]
		if v == nil || c.act == actNone {
			continue
		}
		if c.act == actNull {
			row.Values[i] = nil
			t.nulled[i]++
			changed = true
			continue
		}
		s := len(t.buf)
		var ok bool
		t.buf, ok = t.appendMasked(t.buf, v, c, i)
		if ok {
			row.Values[i] = t.buf[s:len(t.buf):len(t.buf)]
			changed = true
		}
	}
	return changed, nil
}

// AppendRow decodes body, the body of a DataRow message (after the type
// byte and length), masks it and appends the whole message to dst: the
// original bytes when nothing changed, re-encoded otherwise.
func (t *Tally) AppendRow(dst, body []byte) (out []byte, changed bool, err error) {
	if !t.p.masks {
		if len(body) < 2 || int(binary.BigEndian.Uint16(body)) != t.p.n {
			if err := t.row.Decode(body); err != nil {
				return dst, false, fmt.Errorf("mask row: %w", err)
			}
			return dst, false, fmt.Errorf("mask row: %w: %d values, %d columns described", ErrColumnCount, len(t.row.Values), t.p.n)
		}
		t.rows++
		return appendMessage(dst, 'D', body), false, nil
	}
	if err := t.row.Decode(body); err != nil {
		return dst, false, fmt.Errorf("mask row: %w", err)
	}
	changed, err = t.MaskRow(&t.row)
	if err != nil {
		return dst, false, err
	}
	if !changed {
		return appendMessage(dst, 'D', body), false, nil
	}
	size := 4 + 2
	for _, v := range t.row.Values {
		size += 4 + len(v)
	}
	if size > math.MaxInt32 {
		// Masking made a value longer than the protocol can carry.
		return dst, false, fmt.Errorf("mask row: masked row of %d bytes is too large", size)
	}
	out, err = t.row.Encode(dst)
	if err != nil {
		return dst, false, fmt.Errorf("mask row: %w", err)
	}
	return out, true, nil
}

func appendMessage(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)+4))
	return append(dst, body...)
}

func (t *Tally) resetBuf() {
	if cap(t.buf) > maxKeptBuf {
		t.buf = nil
	}
	t.buf = t.buf[:0]
}

// appendMasked appends the masked form of v, a non-NULL value of column
// col, to dst and reports whether it differs from v. When it does not,
// dst is returned unchanged.
func (t *Tally) appendMasked(dst, v []byte, c *colPlan, col int) ([]byte, bool) {
	switch c.act {
	case actReplace:
		if c.repr == reprJSONB && len(v) == 0 {
			return dst, false // not jsonb: nothing to hide
		}
		t.masked[col]++
		switch c.repr {
		case reprJSONB:
			dst = append(dst, v[0])
			return c.rule.appendValue(dst, v[1:], c.rule.id, true, &t.macs), true
		case reprJSON:
			return c.rule.appendValue(dst, v, c.rule.id, true, &t.macs), true
		default:
			return c.rule.appendValue(dst, v, c.rule.id, false, &t.macs), true
		}
	case actDetect:
		return t.appendDetected(dst, v, c.repr, col)
	}
	return dst, false
}

// appendDetected masks what the session's detectors find in v.
func (t *Tally) appendDetected(dst, v []byte, r repr, col int) ([]byte, bool) {
	m := t.p.s.m
	body := v
	if r == reprJSONB {
		if len(v) == 0 {
			return dst, false
		}
		dst = append(dst, v[0])
		body = v[1:]
	}
	start := len(dst)
	if len(body) > m.maxScan {
		t.found[col*len(m.kinds)+m.oversizeKind()]++
		return appendRedacted(dst, oversize, r == reprJSON || r == reprJSONB), true
	}
	t.spans = t.p.s.detect(body, t.spans)
	if len(t.spans) == 0 {
		if r == reprJSONB {
			dst = dst[:start-1]
		}
		return dst, false
	}
	for _, sp := range t.spans {
		t.found[col*len(m.kinds)+sp.kind]++
	}
	return t.p.s.appendSpans(dst, body, t.spans, r == reprJSON || r == reprJSONB, &t.macs), true
}

// appendSpans appends b with spans masked. In JSON text, a span outside a
// string (a card number written as a JSON number) is replaced by a JSON
// string, so the document stays valid.
func (s *Session) appendSpans(dst, b []byte, spans []span, json bool, m *macs) []byte {
	last := 0
	var js jsonScan
	for _, sp := range spans {
		dst = append(dst, b[last:sp.start]...)
		quote := false
		if json {
			js.advance(b, sp.start)
			quote = !js.inString
			js.advance(b, sp.end)
		}
		dst = sp.rule.appendValue(dst, b[sp.start:sp.end], s.m.kinds[sp.kind].name, quote, m)
		last = sp.end
	}
	return append(dst, b[last:]...)
}

// jsonScan follows whether a position of JSON text is inside a string.
type jsonScan struct {
	pos      int
	inString bool
}

// advance moves the scan to position to.
func (j *jsonScan) advance(b []byte, to int) {
	for j.pos < to {
		c := b[j.pos]
		switch {
		case j.inString && c == '\\':
			j.pos++
		case c == '"':
			j.inString = !j.inString
		}
		j.pos++
	}
}

// A ColumnCount is what was masked in one column of a result.
type ColumnCount struct {
	// Column is schema.table.column for table columns, or the name the
	// client sees.
	Column string `json:"column"`
	// Rule is the column rule's id, empty when only detectors apply.
	Rule string `json:"rule,omitempty"`
	// Masked is how many values the column rule replaced.
	Masked int64 `json:"masked,omitempty"`
	// Nulled is how many values were sent as NULL instead.
	Nulled int64 `json:"nulled,omitempty"`
	// Found counts the values detectors masked, per detector.
	Found []DetectorCount `json:"found,omitempty"`
}

// A DetectorCount is how many values one detector or pattern masked.
type DetectorCount struct {
	Detector string `json:"detector"`
	Count    int64  `json:"count"`
}

// Counts returns what the tally masked, for the columns where it masked
// anything, in column order; detectors in name order.
func (t *Tally) Counts() []ColumnCount {
	if !t.p.masks {
		return nil
	}
	kinds := t.p.s.m.kinds
	var out []ColumnCount
	for i, c := range t.p.cols {
		cc := ColumnCount{Column: c.label, Masked: t.masked[i], Nulled: t.nulled[i]}
		if c.rule != nil {
			cc.Rule = c.rule.id
		}
		for k, n := range t.found[i*len(kinds) : (i+1)*len(kinds)] {
			if n == 0 {
				continue
			}
			name := kinds[k].name
			if j := slices.IndexFunc(cc.Found, func(d DetectorCount) bool { return d.Detector == name }); j >= 0 {
				cc.Found[j].Count += n
			} else {
				cc.Found = append(cc.Found, DetectorCount{Detector: name, Count: n})
			}
		}
		slices.SortFunc(cc.Found, func(a, b DetectorCount) int {
			switch {
			case a.Detector < b.Detector:
				return -1
			case a.Detector > b.Detector:
				return 1
			}
			return 0
		})
		if cc.Masked > 0 || cc.Nulled > 0 || len(cc.Found) > 0 {
			out = append(out, cc)
		}
	}
	return out
}

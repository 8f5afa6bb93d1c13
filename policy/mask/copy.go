// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"bytes"
	"errors"
	"fmt"
)

// CopyFormat describes the lines of a COPY ... TO STDOUT in text or CSV
// format, as the statement's options set them. Start from [TextCopy] or
// [CSVCopy].
type CopyFormat struct {
	// CSV selects the CSV format; otherwise the text format.
	CSV bool
	// Delimiter separates columns: tab for text, ',' for CSV.
	Delimiter byte
	// Quote and Escape are CSV's quote character and the character that
	// escapes a quote inside a quoted value (by default, the quote itself).
	Quote, Escape byte
	// Null is how NULL is written: \N in text, an unquoted empty value in
	// CSV.
	Null string
	// Header is set when the first line names the columns (HEADER).
	Header bool
}

// TextCopy returns the default text format of COPY.
func TextCopy() CopyFormat { return CopyFormat{Delimiter: '\t', Null: `\N`} }

// CSVCopy returns the default CSV format of COPY.
func CSVCopy() CopyFormat { return CopyFormat{CSV: true, Delimiter: ',', Quote: '"', Escape: '"'} }

func (f *CopyFormat) check() error {
	switch {
	case f.Delimiter == 0 || f.Delimiter == '\n' || f.Delimiter == '\r' || f.Delimiter == '\\' && !f.CSV:
		return fmt.Errorf("mask copy: bad delimiter %q", f.Delimiter)
	case f.CSV && (f.Quote == 0 || f.Escape == 0 || f.Quote == f.Delimiter):
		return fmt.Errorf("mask copy: bad quote %q or escape %q", f.Quote, f.Escape)
	}
	return nil
}

// copyState is a Tally's state for COPY lines.
type copyState struct {
	lines int64
	field []byte // a decoded value
	out   []byte // the line being rewritten
}

// MaskCopyLine masks one line of COPY ... TO STDOUT output, the data of
// one CopyData message (PostgreSQL sends one row per message, with its
// newline), by the plan of the COPY's column list. It returns line itself
// when nothing changed, otherwise the rewritten line, valid until the next
// call. Masked CSV values are always quoted, so an empty mask is never
// read back as NULL. A line that does not end in a newline, has an
// unterminated quote, or has the wrong number of columns is an error: the
// relay must not forward what it could not read.
//
// When the plan masks nothing the line is returned without being parsed.
// Binary COPY cannot be masked: see [Plan.BinaryCopy].
func (t *Tally) MaskCopyLine(f *CopyFormat, line []byte) (out []byte, changed bool, err error) {
	if err := f.check(); err != nil {
		return nil, false, err
	}
	t.copy.lines++
	if f.Header && t.copy.lines == 1 {
		return line, false, nil
	}
	t.rows++
	if !t.p.masks {
		return line, false, nil
	}
	body, ok := bytes.CutSuffix(line, []byte("\n"))
	if !ok {
		return nil, false, fmt.Errorf("mask copy: %w: no newline at the end", ErrCopyLine)
	}
	if trimmed, ok := bytes.CutSuffix(body, []byte("\r")); ok && (!f.CSV || csvWhole(f, trimmed)) {
		// A CRLF line end; in CSV a '\r' may also end a quoted value.
		body = trimmed
	}
	t.resetBuf()
	t.copy.out = t.copy.out[:0]
	rewriting := false
	col, pos := 0, 0
	for {
		if t.p.n == 0 {
			if len(body) != 0 {
				return nil, false, fmt.Errorf("mask copy: %w: values in a line of no columns", ErrColumnCount)
			}
			break
		}
		if col >= t.p.n {
			return nil, false, fmt.Errorf("mask copy: %w: more than %d values", ErrColumnCount, t.p.n)
		}
		end, next, quoted, err := copyField(f, body, pos)
		if err != nil {
			return nil, false, err
		}
		raw := body[pos:end]
		c := &t.p.cols[col]
		isNull := !quoted && string(raw) == f.Null
		if c.act != actNone && !isNull {
			var masked []byte
			var nulled bool
			masked, nulled, err = t.maskCopyValue(f, raw, quoted, c, col)
			if err != nil {
				return nil, false, err
			}
			if masked != nil || nulled {
				if !rewriting {
					rewriting = true
					t.copy.out = append(t.copy.out, body[:pos]...)
				}
				if nulled {
					t.copy.out = append(t.copy.out, f.Null...)
				} else {
					t.copy.out = appendCopyValue(t.copy.out, f, masked)
				}
			} else if rewriting {
				t.copy.out = append(t.copy.out, raw...)
			}
		} else if rewriting {
			t.copy.out = append(t.copy.out, raw...)
		}
		col++
		if next < 0 {
			break
		}
		if rewriting {
			t.copy.out = append(t.copy.out, f.Delimiter)
		}
		pos = next
	}
	if col != t.p.n {
		return nil, false, fmt.Errorf("mask copy: %w: %d values, %d columns", ErrColumnCount, col, t.p.n)
	}
	if !rewriting {
		return line, false, nil
	}
	t.copy.out = append(t.copy.out, line[len(body):]...)
	return t.copy.out, true, nil
}

// maskCopyValue masks one non-NULL value of column col as it appears in
// the line (raw, quoted in CSV). It returns the masked value decoded (to
// be encoded by the caller), or nulled for a NULL, or neither when the
// value stays.
func (t *Tally) maskCopyValue(f *CopyFormat, raw []byte, quoted bool, c *colPlan, col int) (masked []byte, nulled bool, err error) {
	if c.act == actNull {
		t.nulled[col]++
		return nil, true, nil
	}
	t.copy.field, err = decodeCopyValue(t.copy.field[:0], f, raw, quoted)
	if err != nil {
		return nil, false, err
	}
	s := len(t.buf)
	var ok bool
	t.buf, ok = t.appendMasked(t.buf, t.copy.field, c, col)
	if !ok {
		return nil, false, nil
	}
	return t.buf[s:], false, nil
}

// copyField finds the value of a line starting at pos: it ends at end,
// and the next starts at next (-1 after the last). quoted is set for a
// quoted CSV value, whose raw form includes the quotes.
func copyField(f *CopyFormat, b []byte, pos int) (end, next int, quoted bool, err error) {
	if f.CSV && pos < len(b) && b[pos] == f.Quote {
		i := pos + 1
		for {
			if i >= len(b) {
				return 0, 0, false, fmt.Errorf("mask copy: %w: unterminated quote", ErrCopyLine)
			}
			c := b[i]
			if c == f.Escape && i+1 < len(b) && (b[i+1] == f.Quote || b[i+1] == f.Escape) && (f.Escape != f.Quote || b[i+1] == f.Quote) {
				i += 2
				continue
			}
			if c == f.Quote {
				break
			}
			i++
		}
		end = i + 1
		switch {
		case end == len(b):
			return end, -1, true, nil
		case b[end] == f.Delimiter:
			return end, end + 1, true, nil
		}
		return 0, 0, false, fmt.Errorf("mask copy: %w: text after a closing quote", ErrCopyLine)
	}
	for i := pos; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && !f.CSV:
			i++
		case c == f.Delimiter:
			return i, i + 1, false, nil
		}
	}
	if !f.CSV && len(b) > pos && escapedEnd(b[pos:]) {
		return 0, 0, false, fmt.Errorf("mask copy: %w: backslash at the end", ErrCopyLine)
	}
	return len(b), -1, false, nil
}

// escapedEnd reports whether b ends with an unpaired backslash.
func escapedEnd(b []byte) bool {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// csvWhole reports whether b is a well-formed CSV line, all quotes closed.
func csvWhole(f *CopyFormat, b []byte) bool {
	for pos := 0; ; {
		_, next, _, err := copyField(f, b, pos)
		if err != nil {
			return false
		}
		if next < 0 {
			return true
		}
		pos = next
	}
}

var errBadEscape = errors.New("bad escape")

// decodeCopyValue appends the value that raw encodes to dst.
func decodeCopyValue(dst []byte, f *CopyFormat, raw []byte, quoted bool) ([]byte, error) {
	if f.CSV {
		if !quoted {
			return append(dst, raw...), nil
		}
		in := raw[1 : len(raw)-1]
		for i := 0; i < len(in); i++ {
			if in[i] == f.Escape && i+1 < len(in) && (in[i+1] == f.Quote || in[i+1] == f.Escape) {
				i++
			}
			dst = append(dst, in[i])
		}
		return dst, nil
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(raw) {
			return nil, fmt.Errorf("mask copy: %w: %w", ErrCopyLine, errBadEscape)
		}
		switch c = raw[i]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(raw) && isHexDigit(raw[i+1]) {
				i++
				v = v*16 + hexVal(raw[i])
				n++
			}
			if n == 0 {
				dst = append(dst, 'x')
			} else {
				dst = append(dst, byte(v))
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(raw[i]-'0')
			}
			dst = append(dst, byte(v))
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func isHexDigit(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func hexVal(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}

// appendCopyValue appends v encoded as a COPY value: escaped in text,
// always quoted in CSV.
func appendCopyValue(dst []byte, f *CopyFormat, v []byte) []byte {
	if f.CSV {
		dst = append(dst, f.Quote)
		for _, c := range v {
			if c == f.Quote || c == f.Escape {
				dst = append(dst, f.Escape)
			}
			dst = append(dst, c)
		}
		return append(dst, f.Quote)
	}
	for _, c := range v {
		switch c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\v':
			dst = append(dst, '\\', 'v')
		default:
			if c == f.Delimiter {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
		}
	}
	return dst
}

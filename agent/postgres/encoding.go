// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"

	"github.com/tollgate-dev/tollgate/policy/sql"
)

// errUnreadable is why a statement text cannot be read in the session's
// client_encoding: it is not valid there, or tollgate has no table for
// the encoding's characters.
var errUnreadable = errors.New("the statement text cannot be read in the session's client_encoding")

// textCodec reads the statement text a client sends in its
// client_encoding as the UTF-8 text tollgate's parser takes, and writes
// tollgate's own messages in it. The server converts what a client sends
// from client_encoding before parsing it, so tollgate must parse the same
// characters, not the same bytes. The zero value is UTF-8 (and SQL_ASCII,
// whose bytes the server takes as they are).
type textCodec struct {
	name string            // PostgreSQL's name, as the server reports it
	enc  encoding.Encoding // nil: UTF-8 as it is, or no table (see asciiOnly)
	// asciiOnly: tollgate has no table for the encoding's characters
	// (EUC_TW, MULE_INTERNAL, JOHAB). Their multibyte characters are
	// made of bytes >= 0xA1 only, so a text's ASCII reads the same as in
	// UTF-8; a text with other characters cannot be read.
	asciiOnly bool
	// checkUTF8: the server rejects text that is not valid UTF-8, so
	// tollgate does not parse it either.
	checkUTF8 bool
}

// clientEncodings maps PostgreSQL's client encodings (normalised as
// normEncoding does) to the tables that read them. EUC_JIS_2004 and
// SHIFT_JIS_2004 are read with the tables of their JIS X 0208 subsets,
// which split bytes into characters the same way; a character only the
// 2004 sets have does not decode, and its text is treated as unreadable.
var clientEncodings = map[string]encoding.Encoding{
	"latin1": charmap.ISO8859_1, "latin2": charmap.ISO8859_2, "latin3": charmap.ISO8859_3,
	"latin4": charmap.ISO8859_4, "latin5": charmap.ISO8859_9, "latin6": charmap.ISO8859_10,
	"latin7": charmap.ISO8859_13, "latin8": charmap.ISO8859_14, "latin9": charmap.ISO8859_15,
	"latin10": charmap.ISO8859_16, "iso88595": charmap.ISO8859_5, "iso88596": charmap.ISO8859_6,
	"iso88597": charmap.ISO8859_7, "iso88598": charmap.ISO8859_8,
	"win1250": charmap.Windows1250, "win1251": charmap.Windows1251, "win1252": charmap.Windows1252,
	"win1253": charmap.Windows1253, "win1254": charmap.Windows1254, "win1255": charmap.Windows1255,
	"win1256": charmap.Windows1256, "win1257": charmap.Windows1257, "win1258": charmap.Windows1258,
	"win866": charmap.CodePage866, "win874": charmap.Windows874, "koi8r": charmap.KOI8R,
	"koi8u": charmap.KOI8U,
	"eucjp": japanese.EUCJP, "eucjis2004": japanese.EUCJP,
	"sjis": japanese.ShiftJIS, "shiftjis2004": japanese.ShiftJIS,
	"euckr": korean.EUCKR, "uhc": korean.EUCKR,
	"euccn": simplifiedchinese.GBK, "gbk": simplifiedchinese.GBK, "gb18030": simplifiedchinese.GB18030,
	"big5": traditionalchinese.Big5,
}

// asciiOnlyEncodings are the client encodings tollgate has no table for.
var asciiOnlyEncodings = map[string]bool{"euctw": true, "muleinternal": true, "johab": true}

// trailASCIIEncodings are the client encodings whose multibyte characters
// may end in an ASCII byte (a backslash, a letter or a digit): the
// same bytes split differently there, so a change to one of them can
// change where a literal ends. Read with the tables in clientEncodings.
var trailASCIIEncodings = []string{"sjis", "big5", "gbk", "uhc", "gb18030"}

// codecFor returns the codec of a client_encoding; ok is false for a name
// PostgreSQL does not know as a client encoding.
func codecFor(name string) (textCodec, bool) {
	n := normEncoding(name)
	switch n {
	case "", "utf8", "unicode":
		return textCodec{name: name, checkUTF8: true}, true
	case "sqlascii":
		return textCodec{name: name}, true
	}
	if asciiOnlyEncodings[n] {
		return textCodec{name: name, asciiOnly: true}, true
	}
	if e, ok := clientEncodings[n]; ok {
		return textCodec{name: name, enc: e}, true
	}
	return textCodec{name: name}, false
}

// passThrough reports whether the codec passes text as it is.
func (c textCodec) passThrough() bool { return c.enc == nil && !c.asciiOnly }

// decode returns text as the server reads it, in UTF-8.
func (c textCodec) decode(text string) (string, error) {
	if c.passThrough() || isASCII(text) {
		if c.checkUTF8 && !utf8.ValidString(text) {
			return "", fmt.Errorf("%w (%s)", errUnreadable, c.name)
		}
		return text, nil
	}
	if c.asciiOnly {
		return "", fmt.Errorf("%w (%s)", errUnreadable, c.name)
	}
	out, err := c.enc.NewDecoder().String(text)
	// The tables decode what they cannot read as U+FFFD: the server
	// rejects such text, so tollgate does not guess what it says.
	if err != nil || strings.ContainsRune(out, utf8.RuneError) {
		return "", fmt.Errorf("%w (%s)", errUnreadable, c.name)
	}
	return out, nil
}

// encode writes a message of tollgate's in the client encoding, with "?"
// for a character the encoding lacks.
func (c textCodec) encode(msg string) string {
	if c.passThrough() || isASCII(msg) {
		return msg
	}
	// Character by character, so that one the encoding lacks becomes "?"
	// (the tables' own replacement is a control character). Messages are
	// short.
	var e *encoding.Encoder
	if !c.asciiOnly {
		e = c.enc.NewEncoder()
	}
	var b strings.Builder
	for _, r := range msg {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		if e != nil {
			if s, err := e.String(string(r)); err == nil {
				b.WriteString(s)
				continue
			}
		}
		b.WriteByte('?')
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// readings returns text as each client encoding whose characters may end
// in an ASCII byte reads it, where it is valid there; the server would
// reject it in the others.
func readings(text string) []string {
	var out []string
	for _, n := range trailASCIIEncodings {
		s, err := textCodec{name: n, enc: clientEncodings[n]}.decode(text)
		if err == nil && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// sameReading reports whether two classifications of one text, read in
// different encodings, say the same to policy: the same statements with
// the same classes and the same tables, except in how the names of
// tables with non-ASCII characters are spelt, which is all an encoding
// change can alter when it leaves the text's ASCII in place.
func sameReading(a, b sql.Statement) bool {
	if a.Err != nil || b.Err != nil || a.Count != b.Count || !slices.Equal(a.Classes, b.Classes) ||
		len(a.Tables) != len(b.Tables) || !slices.Equal(asciiNames(a.Tables), asciiNames(b.Tables)) ||
		len(a.Parts) != len(b.Parts) {
		return false
	}
	for i := range a.Parts {
		if !slices.Equal(a.Parts[i].Classes, b.Parts[i].Classes) ||
			!slices.Equal(asciiNames(a.Parts[i].Tables), asciiNames(b.Parts[i].Tables)) {
			return false
		}
	}
	return true
}

func asciiNames(names []string) []string {
	var out []string
	for _, n := range names {
		if isASCII(n) {
			out = append(out, n)
		}
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package sql

import (
	"errors"
	"strings"
)

// ErrEscapes means a text cannot be rewritten for a session with
// standard_conforming_strings off (see EscapeStrings).
var ErrEscapes = errors.New("text cannot be read as with standard_conforming_strings off")

// EscapeStrings rewrites text so that a parser with standard_conforming_
// strings on reads it as a server with the setting off does: there, a
// plain string literal ('...') treats backslashes as escapes, exactly as
// an escape string (E'...') always does, so each plain literal gets the
// prefix E (after a blank when it follows a word). Continuation segments of a literal ('a'<newline>'b') keep the
// reading of their first segment and get no prefix. Dollar-quoted bodies,
// quoted identifiers, comments and the other string kinds are left as they
// are. A national string (N'...') holding a backslash cannot be rewritten
// this way, and ErrEscapes is returned. A text without a backslash reads
// the same either way and is returned unchanged.
func EscapeStrings(text string) (string, error) {
	if !strings.Contains(text, `\`) {
		return text, nil
	}
	var b strings.Builder
	b.Grow(len(text) + 8)
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			end := strings.IndexByte(text[i:], '\n')
			if end < 0 {
				end = len(text) - i
			}
			b.WriteString(text[i : i+end])
			i += end
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			end := blockComment(text, i)
			b.WriteString(text[i:end])
			i = end
		case c == '"':
			end := quoted(text, i, '"', false)
			b.WriteString(text[i:end])
			i = end
		case c == '\'':
			// A plain literal: read with escapes, as the server does.
			// After a word (a type name, say) a blank keeps the prefix
			// from joining it.
			if i > 0 && isIdentCont(text[i-1]) {
				b.WriteByte(' ')
			}
			b.WriteByte('E')
			end := stringLiteral(text, i, true)
			b.WriteString(text[i:end])
			i = end
		case c == '$' && i+1 < len(text) && !isDigit(text[i+1]):
			end, ok := dollarQuoted(text, i)
			if !ok {
				b.WriteByte(c)
				i++
				continue
			}
			b.WriteString(text[i:end])
			i = end
		case isIdentStart(c):
			j := i
			for j < len(text) && isIdentCont(text[j]) {
				j++
			}
			word := text[i:j]
			b.WriteString(word)
			i = j
			if i >= len(text) {
				break
			}
			switch {
			case text[i] == '\'' && len(word) == 1:
				switch word[0] {
				case 'e', 'E':
					end := stringLiteral(text, i, true)
					b.WriteString(text[i:end])
					i = end
				case 'b', 'B', 'x', 'X':
					end := stringLiteral(text, i, false)
					b.WriteString(text[i:end])
					i = end
				case 'n', 'N':
					end := stringLiteral(text, i, true)
					if strings.Contains(text[i:end], `\`) {
						return "", ErrEscapes
					}
					b.WriteString(text[i:end])
					i = end
				}
			case (word == "u" || word == "U") && strings.HasPrefix(text[i:], "&'"):
				// The server refuses Unicode escape strings with the
				// setting off; read as standard, the text stays whole.
				b.WriteByte('&')
				end := stringLiteral(text, i+1, false)
				b.WriteString(text[i+1 : end])
				i = end
			case (word == "u" || word == "U") && strings.HasPrefix(text[i:], `&"`):
				b.WriteByte('&')
				end := quoted(text, i+1, '"', false)
				b.WriteString(text[i+1 : end])
				i = end
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// stringLiteral returns the end of the string literal whose opening quote
// is at i, with its continuation segments (a quote after whitespace that
// holds a newline). escapes says backslashes escape the next byte.
func stringLiteral(text string, i int, escapes bool) int {
	for {
		i = quoted(text, i, '\'', escapes)
		j := i
		newline := false
		for j < len(text) && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r' || text[j] == '\f') {
			newline = newline || text[j] == '\n' || text[j] == '\r'
			j++
		}
		if !newline || j >= len(text) || text[j] != '\'' {
			return i
		}
		i = j
	}
}

// quoted returns the end of the quoted run opened by q at i: a doubled q
// stands for itself, and with escapes a backslash escapes the next byte.
// An unterminated run ends at the end of the text.
func quoted(text string, i int, q byte, escapes bool) int {
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case '\\':
			if escapes {
				j++
			}
		case q:
			if j+1 < len(text) && text[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(text)
}

// blockComment returns the end of the (nested) comment opened at i.
func blockComment(text string, i int) int {
	depth := 0
	for j := i; j+1 < len(text); j++ {
		switch {
		case text[j] == '/' && text[j+1] == '*':
			depth++
			j++
		case text[j] == '*' && text[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(text)
}

// dollarQuoted returns the end of the dollar-quoted string opened at i,
// or false when no tag starts there.
func dollarQuoted(text string, i int) (int, bool) {
	j := i + 1
	for j < len(text) && text[j] != '$' {
		if !isIdentCont(text[j]) || text[j] == '$' {
			return 0, false
		}
		j++
	}
	if j >= len(text) {
		return 0, false
	}
	tag := text[i : j+1]
	end := strings.Index(text[j+1:], tag)
	if end < 0 {
		return len(text), true
	}
	return j + 1 + end + len(tag), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

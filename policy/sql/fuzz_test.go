// SPDX-License-Identifier: Apache-2.0

package sql_test

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy/sql"
)

// FuzzClassify: any text classifies without panicking, and the content of
// a string literal never appears in the normalised text.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"", "hunter2", "it's", "$$", "a\x00b", "/* x */", "\\", "'; DROP TABLE t; --"} {
		f.Add("SELECT 1 WHERE x = ", s)
	}
	f.Add("UPDATE t SET a = ", "$tag$ x $tag$")
	f.Add("COPY t FROM ", "/etc/passwd")
	c := sql.New(sql.Options{})
	f.Fuzz(func(t *testing.T, prefix, secret string) {
		c.Classify(prefix)
		c.Classify(prefix + secret)
		if len(secret) < 6 || strings.ContainsAny(secret, "\x00") {
			return
		}
		q := "SELECT '" + strings.ReplaceAll(secret, "'", "''") + "'"
		st := c.Classify(q)
		if strings.Contains(st.Text, secret) {
			t.Fatalf("literal %q leaked into %q", secret, st.Text)
		}
	})
}

// FuzzEscapeStrings: any text is rewritten without panicking; only
// prefixes are added; and a plain literal's content, escaped as a client
// with standard_conforming_strings off escapes it, never leaks into the
// normalised text of the rewritten statement.
func FuzzEscapeStrings(f *testing.F) {
	for _, s := range []string{`it\'s`, `\\`, `a'b`, `$$`, "\n", `\`, `x"y`} {
		f.Add("SELECT 1 WHERE x = ", s)
	}
	f.Add("SELECT N'", `\'`)
	f.Add("SELECT U&", `'\0041'`)
	c := sql.New(sql.Options{})
	f.Fuzz(func(t *testing.T, prefix, secret string) {
		out, err := sql.EscapeStrings(prefix + secret)
		if err != nil {
			return
		}
		if len(out) < len(prefix+secret) || (!strings.Contains(prefix+secret, `\`) && out != prefix+secret) {
			t.Fatalf("%q rewritten to %q", prefix+secret, out)
		}
		if len(secret) < 6 || strings.ContainsAny(secret, "\x00") {
			return
		}
		lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret)
		q, err := sql.EscapeStrings("SELECT '" + lit + "'")
		if err != nil {
			t.Fatal(err)
		}
		if st := c.Classify(q); strings.Contains(st.Text, secret) {
			t.Fatalf("literal %q leaked into %q", secret, st.Text)
		}
	})
}

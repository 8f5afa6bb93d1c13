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

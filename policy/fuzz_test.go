// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/policy"
)

// FuzzParse checks that no input makes Parse panic, and that a config Parse
// accepts marshals to YAML that Parse accepts again, unchanged.
func FuzzParse(f *testing.F) {
	design, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(design)
	for _, s := range []string{
		"",
		"host_id: a\n",
		"listen_address: ::1\naudit: {retention: 30d}\n",
		tcpTarget,
		tcpTarget + "    upstrem: {user: u}\n",
		"workloads: [{name: w, uid: 7}]\n",
		"a: &x [*x]\n",
		"targets: [{name: a, protocol: tcp, match: [\"[fd00::/64]:1\"]}]\n",
		"<<: {host_id: a}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := policy.Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate after Parse: %v", err)
		}
		if !strings.HasPrefix(c.Hash(), "sha256:") {
			t.Fatalf("Hash = %q", c.Hash())
		}
		out, err := yaml.Marshal(&c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := policy.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(&c2)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if string(out) != string(out2) {
			t.Fatalf("marshal round trip changed the config:\n%s\nthen:\n%s", out, out2)
		}
	})
}

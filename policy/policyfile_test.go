// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

const pfConfig = `state_dir: /var/lib/tollgate
targets:
  - name: db
    protocol: postgres
    match: ["127.0.0.2:5432"]
    upstream: {user: app, password_file: /etc/tollgate/db.pw, sslmode: disable}
oidc:
  issuers: [{url: "https://issuer.example", audience: tollgate}]
policy_file: %POLICY%
`

const pfPolicy = `identities:
  - name: dba
    oidc: {issuer: "https://issuer.example", groups: [dba]}
  - name: deploy
    oidc: {issuer: "https://issuer.example", subject: ci}
rules:
  - id: ddl-review
    when: {identities: [deploy], targets: [db], classes: [ddl]}
    action: review
    approvers: {identities: [dba], timeout: 5m}
`

// writePolicyPair writes a config naming a policy file and returns the
// config's path.
func writePolicyPair(t *testing.T, config, pol string) (cfgPath, polPath string) {
	t.Helper()
	dir := t.TempDir()
	polPath = filepath.Join(dir, "policy.yaml")
	cfgPath = filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(polPath, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(config, "%POLICY%", polPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, polPath
}

func TestPolicyFile(t *testing.T) {
	cfgPath, polPath := writePolicyPair(t, pfConfig, pfPolicy)
	c, err := policy.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Identities) != 2 || len(c.Rules) != 1 || c.Rules[0].ID != "ddl-review" {
		t.Fatalf("policy sections not loaded: %+v %+v", c.Identities, c.Rules)
	}
	cb, _ := os.ReadFile(cfgPath)
	pb, _ := os.ReadFile(polPath)
	sum := sha256.Sum256(append(append([]byte{}, cb...), pb...))
	if want := "sha256:" + hex.EncodeToString(sum[:]); c.Hash() != want {
		t.Errorf("Hash = %s, want sha256 of config then policy %s", c.Hash(), want)
	}
	ch, ph := c.FileHashes()
	cs, ps := sha256.Sum256(cb), sha256.Sum256(pb)
	if ch != "sha256:"+hex.EncodeToString(cs[:]) || ph != "sha256:"+hex.EncodeToString(ps[:]) {
		t.Errorf("FileHashes = %s, %s", ch, ph)
	}

	// A change to the policy file alone changes the hash in force.
	if err := os.WriteFile(polPath, []byte(strings.Replace(pfPolicy, "5m", "6m", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := policy.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Hash() == c.Hash() {
		t.Error("hash did not change with the policy file")
	}
}

func TestPolicyFileErrors(t *testing.T) {
	cases := []struct {
		name, config, policy string
		want                 []string // substrings of the error, %P is the policy path
		unknownKey           bool
	}{
		{name: "unknown-key", config: pfConfig,
			policy:     pfPolicy + "    reasn: typo\n",
			want:       []string{`rules[0] (%P line 11): unknown key "reasn"`},
			unknownKey: true},
		{name: "unknown-top-key", config: pfConfig,
			policy:     "targets: []\n" + pfPolicy,
			want:       []string{`%P line 1: unknown key "targets"`},
			unknownKey: true},
		{name: "bad-type", config: pfConfig,
			policy: strings.Replace(pfPolicy, "timeout: 5m", "timeout: [5m]", 1),
			want:   []string{"(%P line 10)"}},
		{name: "unknown-identity", config: pfConfig,
			policy: strings.Replace(pfPolicy, "identities: [deploy]", "identities: [deploi]", 1),
			want:   []string{`rules[0].when.identities[0] (%P line 8): unknown identity "deploi"`}},
		{name: "unknown-target", config: pfConfig,
			policy: strings.Replace(pfPolicy, "targets: [db]", "targets: [dbx]", 1),
			want:   []string{`rules[0].when.targets[0] (%P line 8): unknown target "dbx"`}},
		{name: "in-both", config: pfConfig + "rules:\n  - {id: x, action: allow}\n",
			policy: pfPolicy,
			want:   []string{"rules (%P line 6): also set in the config file at line 10"}},
		{name: "empty", config: pfConfig, policy: "",
			want: []string{"policy file %P: policy file is empty"}},
		{name: "not-yaml", config: pfConfig, policy: "rules: [\n",
			want: []string{"%P line"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath, polPath := writePolicyPair(t, tc.config, tc.policy)
			_, err := policy.Load(cfgPath)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "%P", polPath)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if tc.unknownKey && !errors.Is(err, policy.ErrUnknownKey) {
				t.Errorf("%v is not ErrUnknownKey", err)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		cfgPath, polPath := writePolicyPair(t, pfConfig, pfPolicy)
		os.Remove(polPath)
		_, err := policy.Load(cfgPath)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "policy_file (line 9): read:") {
			t.Errorf("Load = %v, want a policy_file read error", err)
		}
	})
	t.Run("relative", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "tollgate.yaml")
		os.WriteFile(p, []byte(strings.ReplaceAll(pfConfig, "%POLICY%", "policy.yaml")), 0o600)
		_, err := policy.Load(p)
		if err == nil || !strings.Contains(err.Error(), "policy_file (line 9)") {
			t.Errorf("Load = %v, want a policy_file path error", err)
		}
	})
}

// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestParseMasking(t *testing.T) {
	c, err := policy.Parse([]byte(tcpTarget + `identities:
  - name: dba
    process: {uid: 0}
masking:
  - id: pii
    targets: [a]
    columns: ["public.customers.*", "*.*.ssn"]
    style: hash
    hash_key_file: /etc/tollgate/secrets/mask.key
    binary: nullify
    exempt: [dba]
  - id: secrets
    detectors: [iban, gcp_key, azure_key, password]
    patterns:
      - {name: ssn, regex: '\b(?P<value>\d{3}-\d{2}-\d{4})\b'}
    style: partial
    keep: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Masking{{
		ID: "pii", Targets: []string{"a"}, Columns: []string{"public.customers.*", "*.*.ssn"},
		Style: policy.MaskHash, HashKeyFile: "/etc/tollgate/secrets/mask.key",
		Binary: policy.BinaryNullify, Exempt: []string{"dba"},
	}, {
		ID: "secrets",
		Detectors: []policy.Detector{
			policy.DetectorIBAN, policy.DetectorGCPKey, policy.DetectorAzureKey, policy.DetectorPassword,
		},
		Patterns: []policy.Pattern{{Name: "ssn", Regex: `\b(?P<value>\d{3}-\d{2}-\d{4})\b`}},
		Style:    policy.MaskPartial, Keep: 2,
	}}
	if !reflect.DeepEqual(c.Masking, want) {
		t.Errorf("masking =\n%+v\nwant\n%+v", c.Masking, want)
	}
}

// An unquoted YAML null is no value at all: "binary: null" must not be
// mistaken for a way to ask for NULLs, so it means the default, refuse.
func TestParseMaskingBinaryNull(t *testing.T) {
	c, err := policy.Parse([]byte(tcpTarget + `masking:
  - {id: m, columns: ["*.*.ssn"], style: redact, binary: null}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Masking[0].Binary != "" {
		t.Errorf("binary = %q, want the default", c.Masking[0].Binary)
	}
	_, err = policy.Parse([]byte(tcpTarget + `masking:
  - {id: m, columns: ["*.*.ssn"], style: redact, binary: "null"}
`))
	if err == nil || !strings.Contains(err.Error(), `masking[0].binary (line 6): unknown binary action "null" (want refuse or nullify)`) {
		t.Errorf("binary: \"null\": err = %v", err)
	}
}

func TestDetectorsValid(t *testing.T) {
	for _, d := range policy.Detectors() {
		if !d.Valid() {
			t.Errorf("%q not valid", d)
		}
	}
	if policy.Detector("ssn").Valid() {
		t.Error("ssn is valid")
	}
	for _, a := range []policy.BinaryAction{policy.BinaryRefuse, policy.BinaryNullify} {
		if !a.Valid() {
			t.Errorf("%q not valid", a)
		}
	}
}

func TestMaskingPatternLength(t *testing.T) {
	for _, tt := range []struct {
		re string
		ok bool
	}{
		{`\d{3}-\d{2}-\d{4}`, true}, {`a|bc`, true}, {`(?:x?y)+`, true}, {`a{2,}`, true}, {`\bTICKET-\d+\b`, true},
		{`^`, false}, {`\b`, false}, {`a*`, false}, {`a?|b`, false}, {`(?:)`, false}, {`x{0}`, false}, {`(?i)(a|)`, false},
	} {
		c := policy.Default()
		c.Masking = []policy.Masking{{ID: "m", Patterns: []policy.Pattern{{Name: "p", Regex: tt.re}}, Style: policy.MaskRedact}}
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok %v", tt.re, err, tt.ok)
		}
	}
}

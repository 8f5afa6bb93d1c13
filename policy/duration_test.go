// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"encoding/json"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		str  string // String(); empty means in
	}{
		{"1s", time.Second, ""},
		{"15m", 15 * time.Minute, ""},
		{"15m0s", 15 * time.Minute, "15m"},
		{"1h", time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"2h0m30s", 2*time.Hour + 30*time.Second, ""},
		{"36h", 36 * time.Hour, ""},
		{"48h", 48 * time.Hour, "2d"},
		{"400d", 400 * 24 * time.Hour, ""},
		{"0d", 0, "0s"},
		{"0", 0, "0s"},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"-15m", -15 * time.Minute, ""},
		{"-48h", -48 * time.Hour, ""},
		{"106751d", 106751 * 24 * time.Hour, ""},
	} {
		d, err := policy.ParseDuration(tt.in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tt.in, err)
			continue
		}
		if time.Duration(d) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, time.Duration(d), tt.want)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if d.String() != str {
			t.Errorf("ParseDuration(%q).String() = %q, want %q", tt.in, d.String(), str)
		}
		if again, err := policy.ParseDuration(d.String()); err != nil || again != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), again, err, d)
		}
	}
}

func TestDurationErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", `bad duration "" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"15", `bad duration "15" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"4x", `bad duration "4x" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"1d12h", `bad duration "1d12h" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"1.5d", `bad duration "1.5d" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"d", `bad duration "d" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`},
		{"106752d", `bad duration "106752d": out of range`},
		{"99999999999999999999d", `bad duration "99999999999999999999d": out of range`},
	} {
		_, err := policy.ParseDuration(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %s", tt.in, err, tt.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	type doc struct {
		A policy.Duration `yaml:"a" json:"a"`
		B policy.Duration `yaml:"b" json:"b"`
	}
	in := doc{A: policy.Duration(400 * 24 * time.Hour), B: policy.Duration(90 * time.Minute)}

	y, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a: 400d\nb: 1h30m\n"; string(y) != want {
		t.Errorf("yaml.Marshal = %q, want %q", y, want)
	}
	var outY doc
	if err := yaml.Unmarshal(y, &outY); err != nil || outY != in {
		t.Errorf("yaml.Unmarshal = %+v, %v; want %+v", outY, err, in)
	}

	j, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"400d","b":"1h30m"}`; string(j) != want {
		t.Errorf("json.Marshal = %s, want %s", j, want)
	}
	var outJ doc
	if err := json.Unmarshal(j, &outJ); err != nil || outJ != in {
		t.Errorf("json.Unmarshal = %+v, %v; want %+v", outJ, err, in)
	}
}

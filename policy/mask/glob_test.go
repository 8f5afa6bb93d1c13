// SPDX-License-Identifier: Apache-2.0

package mask

import "testing"

func TestGlob(t *testing.T) {
	for _, tt := range []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true}, {"*", "anything", true}, {"email", "email", true}, {"email", "Email", true},
		{"email", "emails", false}, {"cust*", "customers", true}, {"cust*", "cus", false},
		{"*_ssn", "tax_ssn", true}, {"*_ssn", "ssn", false}, {"a*b*c", "aXXbYYc", true}, {"a*b*c", "aXXbYY", false},
		{"**", "x", true}, {"*a*", "bab", true}, {"", "", true}, {"", "x", false},
	} {
		if got := glob(tt.pat, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}

func TestColPattern(t *testing.T) {
	p, err := parseColPattern("Public.Cust*.EMAIL")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		f    Field
		want bool
	}{
		{Field{Name: "x", Column: Column{"public", "customers", "email"}}, true},
		{Field{Name: "email", Column: Column{"public", "orders", "email"}}, false},
		{Field{Name: "email"}, false}, // an expression: only *.*.name patterns match by name
	} {
		if got := p.matchField(&tt.f); got != tt.want {
			t.Errorf("%+v: %v, want %v", tt.f, got, tt.want)
		}
	}
	for _, bad := range []string{"email", "a.b", "a..b", "a.b.c.d", ""} {
		if _, err := parseColPattern(bad); err == nil {
			t.Errorf("%q parses", bad)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestParseMatch(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want policy.Match
		str  string // canonical form; empty means in
	}{
		{"db.internal:5432", policy.Match{Host: "db.internal", Port: 5432}, ""},
		{"DB.Internal.:5432", policy.Match{Host: "db.internal", Port: 5432}, "db.internal:5432"},
		{"localhost:6432", policy.Match{Host: "localhost", Port: 6432}, ""},
		{"pg_1.svc-a.local:5432", policy.Match{Host: "pg_1.svc-a.local", Port: 5432}, ""},
		{"1.2.3.4:5432", policy.Match{Prefix: netip.MustParsePrefix("1.2.3.4/32"), Port: 5432}, ""},
		{"127.0.0.2:5432", policy.Match{Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 5432}, ""},
		{"10.20.0.0/16:5432", policy.Match{Prefix: netip.MustParsePrefix("10.20.0.0/16"), Port: 5432}, ""},
		{"10.0.0.1/32:22", policy.Match{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Port: 22}, "10.0.0.1:22"},
		{"0.0.0.0/0:5432", policy.Match{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 5432}, ""},
		{"[::1]:5432", policy.Match{Prefix: netip.MustParsePrefix("::1/128"), Port: 5432}, ""},
		{"[fd00::/64]:5432", policy.Match{Prefix: netip.MustParsePrefix("fd00::/64"), Port: 5432}, ""},
		{"[1.2.3.4]:1", policy.Match{Prefix: netip.MustParsePrefix("1.2.3.4/32"), Port: 1}, "1.2.3.4:1"},
		{"[::ffff:10.1.2.3]:65535", policy.Match{Prefix: netip.MustParsePrefix("10.1.2.3/32"), Port: 65535}, "10.1.2.3:65535"},
		{"[::ffff:10.0.0.0/104]:5432", policy.Match{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 5432}, "10.0.0.0/8:5432"},
		{"unix:/var/run/postgresql/.s.PGSQL.5432", policy.Match{Socket: "/var/run/postgresql/.s.PGSQL.5432"}, ""},
		{"unix:/tmp/.s.PGSQL.6432", policy.Match{Socket: "/tmp/.s.PGSQL.6432"}, ""},
	} {
		got, err := policy.ParseMatch(tt.in)
		if err != nil {
			t.Errorf("ParseMatch(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseMatch(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if got.String() != str {
			t.Errorf("ParseMatch(%q).String() = %q, want %q", tt.in, got.String(), str)
		}
		if again, err := policy.ParseMatch(got.String()); err != nil || again != got {
			t.Errorf("ParseMatch(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseMatchErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "empty destination (want host:port, address:port, CIDR:port or unix:/path)"},
		{"unix:", "empty socket path (like unix:/var/run/postgresql/.s.PGSQL.5432)"},
		{"unix:5432", `socket path "5432" is not absolute`},
		{"unix:run/pg/.s.PGSQL.5432", `socket path "run/pg/.s.PGSQL.5432" is not absolute`},
		{"unix:/run//pg/.s.PGSQL.5432", `socket path "/run//pg/.s.PGSQL.5432" is not clean (did you mean /run/pg/.s.PGSQL.5432?)`},
		{"unix:/run/pg/../pg/.s.PGSQL.5432", `socket path "/run/pg/../pg/.s.PGSQL.5432" is not clean (did you mean /run/pg/.s.PGSQL.5432?)`},
		{"unix:/run/pg/", `socket path "/run/pg/" is not clean (did you mean /run/pg?)`},
		{"unix:/", "socket path / is a directory"},
		{"unix:/" + strings.Repeat("x", 107), `socket path "/` + strings.Repeat("x", 107) + `" is longer than 107 bytes`},
		{"unix:/a\x00b", `socket path "/a\x00b" has a NUL byte`},
		{"db.internal", `missing port in "db.internal" (like db.internal:5432)`},
		{"db.internal:", `missing port in "db.internal:" (like db.internal:5432)`},
		{"[::1]", `missing port in "[::1]" (like [::1]:5432)`},
		{"[::1:5432", `missing ] in "[::1:5432"`},
		{":5432", `missing host in ":5432"`},
		{"::1:5432", `bad match "::1:5432": IPv6 must be in brackets, like [::1]:5432`},
		{"db:0", "port 0 out of range (1-65535)"},
		{"db:65536", "port 65536 out of range (1-65535)"},
		{"db:99999999999999999999", "port 99999999999999999999 out of range (1-65535)"},
		{"db:-1", `bad port "-1"`},
		{"db:pg", `bad port "pg"`},
		{"10.0.0.0/33:5432", `bad CIDR "10.0.0.0/33"`},
		{"10.0.0.0/x:5432", `bad CIDR "10.0.0.0/x"`},
		{"10.20.1.0/16:5432", `bad CIDR "10.20.1.0/16": host bits set (did you mean 10.20.0.0/16?)`},
		{"[fd00::1/64]:5432", `bad CIDR "fd00::1/64": host bits set (did you mean fd00::/64?)`},
		{"10.0.0.256:5432", `bad address "10.0.0.256"`},
		{"[db]:5432", `bad address "db"`},
		{"[fe80::1%eth0]:5432", `bad address "fe80::1%eth0": zones are not supported`},
		{"db..internal:5432", `bad host "db..internal": want letters, digits, - and _ in dot-separated labels of at most 63 characters`},
		{"-db:5432", `bad host "-db": want letters, digits, - and _ in dot-separated labels of at most 63 characters`},
		{"d b:5432", `bad host "d b": want letters, digits, - and _ in dot-separated labels of at most 63 characters`},
	} {
		_, err := policy.ParseMatch(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseMatch(%q) = %v, want %s", tt.in, err, tt.want)
		}
	}
}

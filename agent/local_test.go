// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"testing"
)

func TestLocalDials(t *testing.T) {
	locals := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("::1/128")}
	ts := &targetState{
		prefixes: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.2/32"),    // loopback alias: local
			netip.MustParsePrefix("10.1.2.3/32"),     // remote
			netip.MustParsePrefix("192.0.2.0/24"),    // contains the host's own address
			netip.MustParsePrefix("198.51.100.0/24"), // remote CIDR
		},
		ports: []uint16{5432, 6000, 7000, 8000},
	}
	got := localDials(ts, locals)
	want := map[uint16]netip.AddrPort{
		5432: netip.MustParseAddrPort("127.0.0.2:5432"),
		7000: netip.MustParseAddrPort("192.0.2.2:7000"),
	}
	if len(got) != len(want) {
		t.Fatalf("local dials %v, want %v", got, want)
	}
	for p, a := range want {
		if got[p] != a {
			t.Errorf("port %d dials %v, want %v", p, got[p], a)
		}
	}
	ts.localDial = got
	for _, tc := range []struct {
		dst, up string
		ok      bool
	}{
		{"127.0.0.2:5432", "127.0.0.2:5432", true}, // named: dialled as asked
		{"127.0.0.1:5432", "127.0.0.2:5432", true}, // another local address: the named one
		{"0.0.0.0:5432", "127.0.0.2:5432", true},   // unspecified
		{"[::]:5432", "127.0.0.2:5432", true},      // unspecified IPv6
		{"[::1]:5432", "127.0.0.2:5432", true},     // IPv6 loopback
		{"10.1.2.3:6000", "10.1.2.3:6000", true},   // remote, named
		{"192.0.2.9:7000", "192.0.2.9:7000", true}, // inside the CIDR
		{"127.0.0.1:7000", "192.0.2.2:7000", true}, // local, by port
		{"127.0.0.1:6000", "", false},              // remote target: no local match
	} {
		up, ok := upstreamAddr(ts, netip.MustParseAddrPort(tc.dst))
		if ok != tc.ok || ok && up.String() != tc.up {
			t.Errorf("upstream for %s = %v, %v; want %s, %v", tc.dst, up, ok, tc.up, tc.ok)
		}
	}
}

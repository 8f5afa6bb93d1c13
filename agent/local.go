// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/tollgate-dev/tollgate/redirect"
)

// A target whose destination is this host (a loopback address, the
// unspecified address, or one of the host's own addresses) is a local
// service. A server listening on a wildcard address is reached through any
// local address, so such a target is matched on its port at every local
// destination, whichever address the client picks (127.0.0.0/8, ::1,
// 0.0.0.0, ::, the host's interface addresses). Whatever local address the
// client used, the proxy dials the address the config names, never a local
// address the client chose: a local user could otherwise bind that address
// and port and receive the proxy's upstream login.

// localDials returns, for each port of ts that is a local service, the
// address the proxy dials for connects that matched by port alone. locals
// are the host's own prefixes (redirect.LocalPrefixes). Caller holds a.mu.
func localDials(ts *targetState, locals []netip.Prefix) map[uint16]netip.AddrPort {
	out := map[uint16]netip.AddrPort{}
	for i, p := range ts.prefixes {
		port := ts.ports[i]
		if _, ok := out[port]; ok {
			continue
		}
		if a, ok := localAddrIn(p, locals); ok {
			out[port] = netip.AddrPortFrom(a, port)
		}
	}
	return out
}

// localAddrIn returns a local address inside p to dial, if p names this
// host: p itself when it is a single local address, else 127.0.0.1 or ::1
// when p contains it, else the first single local address p contains.
func localAddrIn(p netip.Prefix, locals []netip.Prefix) (netip.Addr, bool) {
	if p.IsSingleIP() {
		return p.Addr(), isLocalAddr(p.Addr(), locals)
	}
	for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		if p.Contains(a) {
			return a, true
		}
	}
	for _, l := range locals {
		if l.IsSingleIP() && p.Contains(l.Addr()) {
			return l.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// isLocalAddr reports whether Linux delivers a connect to a on this host.
func isLocalAddr(a netip.Addr, locals []netip.Prefix) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	for _, l := range locals {
		if l.Contains(a) {
			return true
		}
	}
	return false
}

// localTargets returns the kernel's by-port entries: one per port, the
// first target by name winning when two name local services on one port
// (each still matches its own named addresses exactly), and the ports
// claimed twice. Caller holds a.mu.
func (a *Agent) localTargets() ([]redirect.LocalTarget, []uint16) {
	names := make([]string, 0, len(a.targets))
	for n := range a.targets {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[uint16]bool{}
	var out []redirect.LocalTarget
	var dup []uint16
	for _, n := range names {
		ts := a.targets[n]
		ports := make([]uint16, 0, len(ts.localDial))
		for p := range ts.localDial {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		for _, p := range ports {
			if seen[p] {
				dup = append(dup, p)
				continue
			}
			seen[p] = true
			out = append(out, redirect.LocalTarget{ID: ts.id, Port: p, ListenPort: ts.port})
		}
	}
	return out, dup
}

// upstreamAddr returns where the proxy dials for a connection to dst: dst
// itself when one of the target's destinations names it, else (a local
// destination matched by port) the local address the config names. Caller
// holds a.mu.
func upstreamAddr(ts *targetState, dst netip.AddrPort) (netip.AddrPort, bool) {
	d := dst.Addr().Unmap()
	for i, p := range ts.prefixes {
		if ts.ports[i] == dst.Port() && p.Contains(d) && !d.IsUnspecified() {
			return netip.AddrPortFrom(d, dst.Port()), true
		}
	}
	up, ok := ts.localDial[dst.Port()]
	return up, ok
}

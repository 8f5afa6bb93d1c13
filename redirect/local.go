// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// LocalPrefixes returns the prefixes this host delivers to itself: every
// route of type "local" in the caller's network namespace (the kernel's
// local table: interface addresses, 127.0.0.0/8, ::1, and AnyIP routes like
// `ip route add local 10.9.0.0/16 dev lo`). A connect to any of them reaches
// a server listening on a wildcard address here. IPv4-mapped IPv6 is
// returned as IPv4.
func LocalPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rib, err := syscall.NetlinkRIB(unix.RTM_GETROUTE, fam)
		if err != nil {
			return nil, fmt.Errorf("local prefixes: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rib)
		if err != nil {
			return nil, fmt.Errorf("local prefixes: %w", err)
		}
		for _, m := range msgs {
			if p, ok := localRoute(m); ok {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out), nil
}

// localRoute returns the destination of a route message of type local.
func localRoute(m syscall.NetlinkMessage) (netip.Prefix, bool) {
	if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
		return netip.Prefix{}, false
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, flags.
	dstLen, typ := int(m.Data[1]), m.Data[7]
	if typ != unix.RTN_LOCAL {
		return netip.Prefix{}, false
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return netip.Prefix{}, false
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.RTA_DST {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.Value)
		if !ok {
			return netip.Prefix{}, false
		}
		addr = addr.Unmap()
		bits := dstLen
		if bits > addr.BitLen() {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(addr, bits).Masked(), true
	}
	return netip.Prefix{}, false
}

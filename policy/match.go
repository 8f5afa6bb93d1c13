// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// A Match is one destination of a target: an address prefix or a hostname,
// and a port. Matches are comparable; two equal Matches select the same
// destinations.
type Match struct {
	// Prefix is the destination network. A plain address is a /32 or
	// /128; IPv4-mapped IPv6 is stored as IPv4. It is the zero Prefix when
	// Host is set.
	Prefix netip.Prefix
	// Host is a hostname, lower case without a trailing dot, that the
	// daemon resolves (and re-resolves). It is empty when Prefix is valid.
	Host string
	// Port is the destination port, 1 to 65535; zero for a Socket.
	Port uint16
	// Socket is a unix socket path, absolute and clean, like
	// /var/run/postgresql/.s.PGSQL.5432: connects to that path are
	// intercepted. Prefix, Host and Port are then unset.
	Socket string
}

// UnixPrefix starts a unix socket destination: "unix:/path".
const UnixPrefix = "unix:"

// UnixPathMax is the longest socket path a Match can name, in bytes: a
// sockaddr_un holds 108 with the terminating NUL.
const UnixPathMax = 107

// ParseMatch parses a target destination: "host:port", "1.2.3.4:5432",
// "10.20.0.0/16:5432", "[::1]:5432" or "[fd00::/64]:5432". IPv6 addresses
// and prefixes must be in brackets. The port is required. A unix socket is
// "unix:/var/run/postgresql/.s.PGSQL.5432".
func ParseMatch(s string) (Match, error) {
	if s == "" {
		return Match{}, errors.New("empty destination (want host:port, address:port, CIDR:port or unix:/path)")
	}
	if p, ok := strings.CutPrefix(s, UnixPrefix); ok {
		return parseSocket(p)
	}
	host, port, err := splitMatch(s)
	if err != nil {
		return Match{}, err
	}
	var m Match
	if m.Port, err = parsePort(port); err != nil {
		return Match{}, err
	}
	switch {
	case strings.Contains(host, "/"):
		m.Prefix, err = parsePrefix(host)
	case strings.HasPrefix(s, "["):
		m.Prefix, err = parseAddr(host)
	default:
		if a, aerr := parseAddr(host); aerr == nil {
			m.Prefix = a
		} else if looksNumeric(host) {
			err = aerr
		} else {
			m.Host, err = parseHostname(host)
		}
	}
	if err != nil {
		return Match{}, err
	}
	return m, nil
}

// String returns m in the canonical form ParseMatch reads: a single address
// without its prefix length, IPv6 in brackets.
func (m Match) String() string {
	port := strconv.Itoa(int(m.Port))
	switch {
	case m.Socket != "":
		return UnixPrefix + m.Socket
	case m.Host != "":
		return m.Host + ":" + port
	case !m.Prefix.IsValid():
		return ":" + port
	case m.Prefix.IsSingleIP():
		return netip.AddrPortFrom(m.Prefix.Addr(), m.Port).String()
	case m.Prefix.Addr().Is6():
		return "[" + m.Prefix.String() + "]:" + port
	default:
		return m.Prefix.String() + ":" + port
	}
}

// splitMatch splits s into its host (or address, or prefix) and port. The
// brackets around IPv6 are removed.
func splitMatch(s string) (host, port string, err error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", "", fmt.Errorf("missing ] in %q", s)
		}
		port, ok := strings.CutPrefix(after, ":")
		if !ok || port == "" {
			return "", "", fmt.Errorf("missing port in %q (like [%s]:5432)", s, host)
		}
		return host, port, nil
	}
	switch strings.Count(s, ":") {
	case 0:
		return "", "", fmt.Errorf("missing port in %q (like %s:5432)", s, s)
	case 1:
	default:
		return "", "", fmt.Errorf("bad match %q: IPv6 must be in brackets, like [::1]:5432", s)
	}
	host, port, _ = strings.Cut(s, ":")
	if host == "" {
		return "", "", fmt.Errorf("missing host in %q", s)
	}
	if port == "" {
		return "", "", fmt.Errorf("missing port in %q (like %s5432)", s, s)
	}
	return host, port, nil
}

// parseSocket checks a unix socket path. It must be absolute and clean
// because the kernel program compares the path a client dials byte for
// byte: "/run//pg/x" or "/run/pg/../pg/x" would name the same socket but
// never match (see docs/THREAT-MODEL.md for the names a client can choose).
func parseSocket(p string) (Match, error) {
	switch {
	case p == "":
		return Match{}, errors.New("empty socket path (like unix:/var/run/postgresql/.s.PGSQL.5432)")
	case !path.IsAbs(p):
		return Match{}, fmt.Errorf("socket path %q is not absolute", p)
	case path.Clean(p) != p:
		return Match{}, fmt.Errorf("socket path %q is not clean (did you mean %s?)", p, path.Clean(p))
	case p == "/":
		return Match{}, errors.New("socket path / is a directory")
	case len(p) > UnixPathMax:
		return Match{}, fmt.Errorf("socket path %q is longer than %d bytes", p, UnixPathMax)
	case strings.IndexByte(p, 0) >= 0:
		return Match{}, fmt.Errorf("socket path %q has a NUL byte", p)
	}
	return Match{Socket: p}, nil
}

func parsePort(s string) (uint16, error) {
	if strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %s out of range (1-65535)", s)
	}
	return uint16(p), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

func parseAddr(s string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q: zones are not supported", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// looksNumeric reports whether s ends in a numeric label, which no hostname
// does (RFC 3696, section 2): "10.0.0.256" is a bad address, not a host.
func looksNumeric(s string) bool {
	last := s[strings.LastIndexByte(s, '.')+1:]
	return last != "" && strings.Trim(last, "0123456789") == ""
}

func parseHostname(s string) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(s, "."))
	if err := checkHostname(h); err != nil {
		return "", fmt.Errorf("bad host %q: %w", s, err)
	}
	return h, nil
}

var errHostname = errors.New("want letters, digits, - and _ in dot-separated labels of at most 63 characters")

func checkHostname(h string) error {
	if h == "" || len(h) > 253 {
		return errHostname
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errHostname
		}
		for _, c := range []byte(label) {
			if !isAlnum(c) && c != '-' && c != '_' {
				return errHostname
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

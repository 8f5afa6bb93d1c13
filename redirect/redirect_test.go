// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFindCgroup2(t *testing.T) {
	for _, tc := range []struct {
		mounts, want string
		err          error
	}{
		{"tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n", "/sys/fs/cgroup/unified", nil},
		{"cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n", "/sys/fs/cgroup", nil},
		{"none /mnt/my\\040cgroups cgroup2 rw 0 0\n", "/mnt/my cgroups", nil},
		{"cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", "", ErrNoCgroup2},
	} {
		got, err := findCgroup2(strings.NewReader(tc.mounts))
		if err != tc.err || got != tc.want {
			t.Errorf("findCgroup2(%q) = %q, %v; want %q, %v", tc.mounts, got, err, tc.want, tc.err)
		}
	}
}

// TestTargetKey checks the LPM key layout the programs look up: port in
// network order, IPv4 as ::ffff:a.b.c.d, and the prefix length counting the
// port's 16 bits.
func TestTargetKey(t *testing.T) {
	k := targetKey(netip.MustParsePrefix("10.20.0.0/16"), 5432)
	if k.Prefixlen != 16+96+16 {
		t.Errorf("prefixlen %d", k.Prefixlen)
	}
	if b := [2]byte{byte(k.Port), byte(k.Port >> 8)}; b != [2]byte{0x15, 0x38} { // 5432 big-endian in memory (little-endian host)
		t.Errorf("port bytes %x", b)
	}
	want := netip.MustParseAddr("::ffff:10.20.0.0").As16()
	if k.Addr != want {
		t.Errorf("addr %x", k.Addr)
	}
	// Host bits are masked off so that equal prefixes give equal keys.
	if targetKey(netip.MustParsePrefix("10.20.3.4/16"), 5432) != k {
		t.Error("unmasked prefix gives another key")
	}
	k6 := targetKey(netip.MustParsePrefix("::1/128"), 7777)
	if k6.Prefixlen != 16+128 || k6.Addr != netip.MustParseAddr("::1").As16() {
		t.Errorf("v6 key %+v", k6)
	}
}

// TestPeerKey checks that the proxy's view of a peer (4-byte IPv4 from an
// AF_INET listener) gives the key sockops writes (v4-mapped, host-order port).
func TestPeerKey(t *testing.T) {
	k := peerKey(netip.MustParseAddrPort("127.0.0.1:40000"))
	if k.Addr != netip.MustParseAddr("::ffff:127.0.0.1").As16() || k.Port != 40000 {
		t.Errorf("peer key %+v", k)
	}
}

func TestOriginFromMeta(t *testing.T) {
	m := redirectConnMeta{
		OrigAddr: netip.MustParseAddr("::ffff:127.0.0.2").As16(), OrigPort: 5432,
		Family: unix.AF_INET6, TargetId: 7, WorkloadId: 9, Pid: 100, Tid: 101, Uid: 1000, Gid: 1001, CgroupId: 55,
	}
	for i, c := range "psql" {
		m.Comm[i] = int8(c)
	}
	o := originFromMeta(&m)
	if o.Dst.String() != "127.0.0.2:5432" || o.Family != unix.AF_INET6 || o.TargetID != 7 || o.WorkloadID != 9 {
		t.Errorf("origin %+v", o)
	}
	if p := o.Process; p.PID != 100 || p.TID != 101 || p.UID != 1000 || p.GID != 1001 || p.Comm != "psql" || p.CgroupID != 55 {
		t.Errorf("process %+v", p)
	}
}

// TestLocalPrefixes reads the kernel's local routes: loopback is always
// among them (any namespace has lo up with 127.0.0.0/8 once it is up).
func TestLocalPrefixes(t *testing.T) {
	ps, err := LocalPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range ps {
		if p.Contains(netip.MustParseAddr("127.0.0.1")) {
			found = true
		}
		if p.Addr().Is4In6() {
			t.Errorf("v4-mapped prefix %s", p)
		}
	}
	if !found {
		t.Errorf("127.0.0.1 not local in %v", ps)
	}
}

func TestLocalKey(t *testing.T) {
	k := localKey(netip.MustParsePrefix("10.1.2.3/32"))
	if k.Prefixlen != 128 || k.Addr != netip.MustParseAddr("::ffff:10.1.2.3").As16() {
		t.Errorf("local key %+v", k)
	}
	if k := localKey(netip.MustParsePrefix("fe80::1/128")); k.Prefixlen != 128 {
		t.Errorf("v6 local key %+v", k)
	}
}

// TestCheckPinDir checks the pin path rules on plain directories: root's
// alone, never group/other-writable unless sticky where allowed.
func TestCheckPinDir(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/pin"
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := checkPinDir(p, false); !errors.Is(err, ErrUnsafePinPath) {
			t.Fatalf("directory of uid %d accepted: %v", os.Geteuid(), err)
		}
		return
	}
	if err := checkPinDir(p, false); err != nil {
		t.Fatalf("root's 0700 directory: %v", err)
	}
	os.Chmod(p, 0o777|os.ModeSticky)
	if err := checkPinDir(p, false); !errors.Is(err, ErrUnsafePinPath) {
		t.Errorf("world-writable pin directory accepted: %v", err)
	}
	if err := checkPinDir(p, true); err != nil {
		t.Errorf("sticky world-writable parent refused: %v", err)
	}
	os.Chmod(p, 0o777)
	if err := checkPinDir(p, true); !errors.Is(err, ErrUnsafePinPath) {
		t.Errorf("world-writable parent without sticky bit accepted: %v", err)
	}
	os.Chmod(p, 0o700)
	os.Chown(p, 65534, 65534)
	if err := checkPinDir(p, false); !errors.Is(err, ErrUnsafePinPath) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("directory of uid 65534 accepted: %v", err)
	}
	os.Symlink(p, dir+"/link")
	os.Chown(p, 0, 0)
	if err := checkPinDir(dir+"/link", false); !errors.Is(err, ErrUnsafePinPath) {
		t.Errorf("symlink accepted: %v", err)
	}
}

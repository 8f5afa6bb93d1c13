// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Target is one protected destination as the kernel matches it.
type Target struct {
	// ID identifies the target in origins; it must not be zero.
	ID uint32
	// Prefix is the destination network; IPv4 and IPv4-mapped IPv6 are
	// the same thing to the programs.
	Prefix netip.Prefix
	// Port is the destination port.
	Port uint16
	// ListenPort is the proxy port the connect is rewritten to.
	ListenPort uint16
}

// LocalTarget is a target that is a service of this host: the programs
// match its port on every local destination (loopback, the unspecified
// address, the host's own addresses), whatever address the client picks.
type LocalTarget struct {
	// ID identifies the target in origins; it must not be zero.
	ID uint32
	// Port is the service's port.
	Port uint16
	// ListenPort is the proxy port the connect is rewritten to.
	ListenPort uint16
}

// Process is the kernel's view of who opened a redirected connection, taken
// in the connect() call itself.
type Process struct {
	PID         uint32 // thread group id in the init pid namespace
	TID         uint32
	UID         uint32 // real uid
	GID         uint32
	Comm        string // name of the connecting thread
	CgroupID    uint64 // cgroup v2 id of the connecting task
	NetNSCookie uint64
	SockCookie  uint64
}

// Origin is what the proxy learns about an accepted connection.
type Origin struct {
	// Dst is the destination the client asked for; IPv4 is unmapped.
	Dst        netip.AddrPort
	TargetID   uint32
	WorkloadID uint32
	// Family is the client socket's address family (unix.AF_INET,
	// unix.AF_INET6 or unix.AF_UNIX; a v4-mapped connect from an AF_INET6
	// socket is AF_INET6).
	Family int
	// Path is the socket path a unix client connected to (Dst is then
	// the zero AddrPort).
	Path    string
	Process Process
}

// SetTargets replaces the set of protected destinations. New entries are
// written before stale ones are removed, so a target present before and
// after is never unprotected.
func (r *Redirector) SetTargets(targets []Target) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[redirectTargetKey]redirectTargetValue, len(targets))
	for _, t := range targets {
		if t.ID == 0 {
			return errors.New("set targets: zero target id")
		}
		if !t.Prefix.IsValid() || t.Port == 0 || t.ListenPort == 0 {
			return fmt.Errorf("set targets: invalid target %d (%s port %d → %d)", t.ID, t.Prefix, t.Port, t.ListenPort)
		}
		want[targetKey(t.Prefix, t.Port)] = redirectTargetValue{TargetId: t.ID, ListenPort: htons(t.ListenPort)}
	}
	for k, v := range want {
		if err := r.objs.Targets.Put(k, v); err != nil {
			return fmt.Errorf("set targets: %w", err)
		}
	}
	var stale []redirectTargetKey
	var k redirectTargetKey
	var v redirectTargetValue
	it := r.objs.Targets.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("set targets: %w", err)
	}
	for _, k := range stale {
		if err := r.objs.Targets.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set targets: %w", err)
		}
	}
	return nil
}

// SetLocalTargets replaces the targets matched by port on every local
// destination. A port appears at most once.
func (r *Redirector) SetLocalTargets(targets []LocalTarget) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[uint16]redirectTargetValue, len(targets))
	for _, t := range targets {
		if t.ID == 0 || t.Port == 0 || t.ListenPort == 0 {
			return fmt.Errorf("set local targets: invalid target %d (port %d → %d)", t.ID, t.Port, t.ListenPort)
		}
		if _, dup := want[htons(t.Port)]; dup {
			return fmt.Errorf("set local targets: port %d twice", t.Port)
		}
		want[htons(t.Port)] = redirectTargetValue{TargetId: t.ID, ListenPort: htons(t.ListenPort)}
	}
	if err := syncMap(r.objs.LocalPorts, want); err != nil {
		return fmt.Errorf("set local targets: %w", err)
	}
	return nil
}

// SetLocalNets replaces the host's own address prefixes (see
// [LocalPrefixes]). Loopback and the unspecified address are local without
// being listed.
func (r *Redirector) SetLocalNets(prefixes []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[redirectLocalKey]uint8, len(prefixes))
	for _, p := range prefixes {
		want[localKey(p)] = 1
	}
	if err := syncMap(r.objs.LocalNets, want); err != nil {
		return fmt.Errorf("set local nets: %w", err)
	}
	return nil
}

// UnitPathLen bounds a unit's cgroup path (relative to the cgroup2 mount,
// with its leading slash) that the programs can watch.
const UnitPathLen = len(redirectUnitPath{}.Path)

// SetWorkloads replaces the selected workloads: cgroup ids (a cgroup and all
// its descendants) and real uids, each mapped to a non-zero workload id.
// units maps the cgroup paths where systemd units selected as workloads
// appear (like /system.slice/nightly.service) to their workload ids: the
// programs add such a cgroup the moment the kernel creates it, so a
// restarted unit is intercepted from its first instruction. Entries the
// programs added for a unit workload stay until its cgroup is removed.
func (r *Redirector) SetWorkloads(cgroups map[uint64]uint32, uids map[uint32]uint32, units map[string]uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	paths := make(map[redirectUnitPath]uint32, len(units))
	unitIDs := map[uint32]bool{}
	for p, id := range units {
		if len(p) >= UnitPathLen {
			return fmt.Errorf("set workloads: unit cgroup path %q longer than %d bytes", p, UnitPathLen-1)
		}
		var k redirectUnitPath
		for i := 0; i < len(p); i++ {
			k.Path[i] = int8(p[i])
		}
		paths[k] = id
		unitIDs[id] = true
	}
	// Paths first, so a unit starting now is caught by one or the other.
	if err := syncMap(r.objs.UnitPaths, paths); err != nil {
		return fmt.Errorf("set unit paths: %w", err)
	}
	for k, v := range cgroups {
		if err := r.objs.WorkloadCgroups.Put(k, v); err != nil {
			return fmt.Errorf("set workload cgroups: %w", err)
		}
	}
	var stale []uint64
	var k uint64
	var v uint32
	it := r.objs.WorkloadCgroups.Iterate()
	for it.Next(&k, &v) {
		if _, ok := cgroups[k]; !ok && !unitIDs[v] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("set workload cgroups: %w", err)
	}
	for _, k := range stale {
		if err := r.objs.WorkloadCgroups.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set workload cgroups: %w", err)
		}
	}
	if err := syncMap(r.objs.WorkloadUids, uids); err != nil {
		return fmt.Errorf("set workload uids: %w", err)
	}
	return nil
}

// SetListeners records the proxy's listener ports, which are never
// redirected (no loops).
func (r *Redirector) SetListeners(ports []uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[uint16]uint8, len(ports))
	for _, p := range ports {
		want[htons(p)] = 1
	}
	if err := syncMap(r.objs.Listeners, want); err != nil {
		return fmt.Errorf("set listeners: %w", err)
	}
	return nil
}

func syncMap[K comparable, V any](m *ebpf.Map, want map[K]V) error {
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return err
		}
	}
	var stale []K
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Lookup returns and forgets the origin of the connection whose client end
// is peer (the accepted connection's remote address). A miss returns
// ErrNoOrigin: the caller must close the connection, never guess.
func (r *Redirector) Lookup(peer netip.AddrPort) (Origin, error) {
	key := peerKey(peer)
	var m redirectConnMeta
	if err := r.objs.Origins.LookupAndDelete(key, &m); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, fmt.Errorf("lookup %s: %w", peer, ErrNoOrigin)
		}
		return Origin{}, fmt.Errorf("lookup %s: %w", peer, err)
	}
	return originFromMeta(&m), nil
}

// Counters are the programs' event counts since the maps were created.
type Counters struct {
	Redirected   uint64 // connects rewritten to a listener
	StashFailed  uint64 // connects refused because no stash entry could be written
	OriginFailed uint64 // connections whose origin could not be published
	SkippedMark  uint64 // connects skipped because the socket carries the daemon's mark
	NotOwned     uint64 // connects refused because the proxy port was not the daemon's (down, or squatted)
}

// Counters sums the per-CPU counters.
func (r *Redirector) Counters() (Counters, error) {
	var c Counters
	dst := []*uint64{&c.Redirected, &c.StashFailed, &c.OriginFailed, &c.SkippedMark, &c.NotOwned}
	for i, p := range dst {
		var vals []uint64
		if err := r.objs.Counters.Lookup(uint32(i), &vals); err != nil {
			return c, fmt.Errorf("read counters: %w", err)
		}
		for _, v := range vals {
			*p += v
		}
	}
	return c, nil
}

func targetKey(p netip.Prefix, port uint16) redirectTargetKey {
	p = p.Masked()
	addr := p.Addr()
	bits := p.Bits()
	if addr.Is4() {
		bits += 96
	}
	k := redirectTargetKey{Prefixlen: uint32(16 + bits), Port: htons(port)}
	k.Addr = addr.As16()
	return k
}

func localKey(p netip.Prefix) redirectLocalKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return redirectLocalKey{Prefixlen: uint32(bits), Addr: p.Addr().As16()}
}

func peerKey(ap netip.AddrPort) redirectPeerKey {
	return redirectPeerKey{Addr: ap.Addr().As16(), Port: ap.Port()}
}

func originFromMeta(m *redirectConnMeta) Origin {
	addr := netip.AddrFrom16(m.OrigAddr).Unmap()
	comm := make([]byte, 0, len(m.Comm))
	for _, c := range m.Comm {
		if c == 0 {
			break
		}
		comm = append(comm, byte(c))
	}
	fam := unix.AF_INET
	if m.Family == unix.AF_INET6 {
		fam = unix.AF_INET6
	}
	return Origin{
		Dst:        netip.AddrPortFrom(addr, m.OrigPort),
		TargetID:   m.TargetId,
		WorkloadID: m.WorkloadId,
		Family:     fam,
		Process: Process{
			PID:         m.Pid,
			TID:         m.Tid,
			UID:         m.Uid,
			GID:         m.Gid,
			Comm:        string(comm),
			CgroupID:    m.CgroupId,
			NetNSCookie: m.NetnsCookie,
			SockCookie:  m.SockCookie,
		},
	}
}

// htons returns p with its bytes in network order as the host reads it.
func htons(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// nativeU32 reinterprets four bytes in network order as a host integer, so
// that storing it writes the bytes unchanged.
func nativeU32(b [4]byte) uint32 {
	return binary.NativeEndian.Uint32(b[:])
}

// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// MapUsage is how full one of the programs' maps is.
type MapUsage struct {
	// Name is the map's name in bpf/redirect.c.
	Name string
	// Entries is the number of keys in it now; Max its capacity.
	Entries, Max uint32
}

// Occupancy counts the entries of the maps that can fill up: the
// per-connection state (stash, origins, and their unix socket
// counterparts), which an LRU map evicts from when full, and the
// configuration maps, whose writes fail when full. Counting walks the keys
// (one syscall each), so it is for a scrape, not a hot path.
func (r *Redirector) Occupancy() ([]MapUsage, error) {
	maps := []struct {
		name string
		m    *ebpf.Map
	}{
		{"stash", r.objs.Stash}, {"origins", r.objs.Origins},
		{"unix_origins", r.objs.UnixOrigins}, {"unix_peers", r.objs.UnixPeers},
		{"targets", r.objs.Targets}, {"local_ports", r.objs.LocalPorts}, {"local_nets", r.objs.LocalNets},
		{"workload_cgroups", r.objs.WorkloadCgroups}, {"workload_uids", r.objs.WorkloadUids},
		{"listeners", r.objs.Listeners}, {"unix_targets", r.objs.UnixTargets}, {"unit_paths", r.objs.UnitPaths},
	}
	out := make([]MapUsage, 0, len(maps))
	for _, mp := range maps {
		if mp.m == nil {
			continue
		}
		n, err := countKeys(mp.m)
		if err != nil {
			return out, fmt.Errorf("count %s: %w", mp.name, err)
		}
		out = append(out, MapUsage{Name: mp.name, Entries: n, Max: mp.m.MaxEntries()})
	}
	return out, nil
}

// countKeys walks a map's keys. Entries may come and go during the walk;
// the count is what a scrape can know. The walk stops at the capacity, so
// a map that keeps changing cannot keep it going.
func countKeys(m *ebpf.Map) (uint32, error) {
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	var n uint32
	var prev any // nil: the first key
	for n < m.MaxEntries() {
		if err := m.NextKey(prev, next); err != nil {
			if isNoKey(err) {
				return n, nil
			}
			return n, err
		}
		n++
		copy(key, next)
		prev = key
	}
	return n, nil
}

func isNoKey(err error) bool { return errors.Is(err, ebpf.ErrKeyNotExist) }

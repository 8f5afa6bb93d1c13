// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
)

// ErrCgroupMissing means a workload's cgroup does not exist.
var ErrCgroupMissing = errors.New("cgroup does not exist")

// workloadState is one configured workload as resolved now.
type workloadState struct {
	Name     string `json:"name"`
	ID       uint32 `json:"id"`
	Selector string `json:"selector"`
	// Cgroup is the resolved cgroup path relative to the cgroup2 mount.
	Cgroup   string  `json:"cgroup,omitempty"`
	CgroupID uint64  `json:"cgroup_id,omitempty"`
	UID      *uint32 `json:"uid,omitempty"`
	// Problem says why the workload is not intercepted right now (a unit
	// that is not running has no cgroup).
	Problem string `json:"problem,omitempty"`
}

// stableID derives a non-zero id from a name, so that ids stay the same
// across reloads and restarts while origins are in flight.
func stableID(kind, name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(name))
	id := h.Sum32()
	if id == 0 {
		id = 1
	}
	return id
}

// resolveWorkloads resolves every workload to a cgroup id or uid. A missing
// `cgroup:` is an error when strict (at start and reload: bad config); a
// unit that is not running yet is never an error, it simply matches nothing
// until it starts.
func resolveWorkloads(root string, wls []policy.Workload, strict bool) ([]workloadState, error) {
	out := make([]workloadState, 0, len(wls))
	var errs []error
	for i, w := range wls {
		st := workloadState{Name: w.Name, ID: stableID("workload", w.Name)}
		switch {
		case w.UID != nil:
			uid := *w.UID
			st.UID = &uid
			st.Selector = fmt.Sprintf("uid:%d", uid)
		case w.Cgroup != "":
			st.Selector = "cgroup:" + w.Cgroup
			id, err := redirect.CgroupID(filepath.Join(root, w.Cgroup))
			if err != nil {
				if strict {
					errs = append(errs, fmt.Errorf("workloads[%d] %q: cgroup %s: %w under %s", i, w.Name, w.Cgroup, ErrCgroupMissing, root))
				}
				st.Problem = fmt.Sprintf("cgroup %s does not exist", w.Cgroup)
				break
			}
			st.Cgroup, st.CgroupID = w.Cgroup, id
		case w.Unit != "":
			st.Selector = "unit:" + w.Unit
			p, err := findUnitCgroup(root, w.Unit)
			if err != nil {
				st.Problem = err.Error()
				break
			}
			id, err := redirect.CgroupID(filepath.Join(root, p))
			if err != nil {
				st.Problem = err.Error()
				break
			}
			st.Cgroup, st.CgroupID = p, id
		}
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}

// findUnitCgroup finds the cgroup of a systemd unit: the directory named
// after the unit in the cgroup2 tree. Slices nest, units do not, so the
// search stops at the first level named like a unit.
func findUnitCgroup(root, unit string) (string, error) {
	for _, guess := range []string{"system.slice/" + unit, unit, "user.slice/" + unit} {
		if st, err := os.Stat(filepath.Join(root, guess)); err == nil && st.IsDir() {
			return "/" + guess, nil
		}
	}
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// cgroups come and go while we walk; skip what vanished.
			return fs.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if name == unit {
			rel, _ := filepath.Rel(root, p)
			found = append(found, "/"+rel)
			return fs.SkipDir
		}
		if p != root && !strings.HasSuffix(name, ".slice") {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("find unit %s: %w", unit, err)
	}
	if len(found) == 0 {
		return "", fmt.Errorf("unit %s has no cgroup (not running?)", unit)
	}
	sort.Strings(found)
	return found[0], nil
}

// workloadMaps turns resolved workloads into the redirect maps.
func workloadMaps(wls []workloadState) (map[uint64]uint32, map[uint32]uint32) {
	cg := map[uint64]uint32{}
	uids := map[uint32]uint32{}
	for _, w := range wls {
		if w.UID != nil {
			uids[*w.UID] = w.ID
		}
		if w.CgroupID != 0 {
			cg[w.CgroupID] = w.ID
		}
	}
	return cg, uids
}

// unitPaths returns the cgroup paths where the units selected as workloads
// appear when they (re)start, for the programs to catch a new cgroup as
// the kernel creates it: where the unit is now, and where findUnitCgroup
// looks first. A unit in another slice that is not running at start is
// caught once it has been found there.
func unitPaths(wls []workloadState) map[string]uint32 {
	out := map[string]uint32{}
	for _, w := range wls {
		unit, ok := strings.CutPrefix(w.Selector, "unit:")
		if !ok {
			continue
		}
		for _, p := range []string{"/system.slice/" + unit, "/" + unit, "/user.slice/" + unit, w.Cgroup} {
			if p != "" && len(p) < redirect.UnitPathLen {
				out[p] = w.ID
			}
		}
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestSessionIDSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	a, b := newSessionID(t0), newSessionID(t0.Add(time.Millisecond))
	if len(a) != 26 || strings.Trim(a, crockford) != "" {
		t.Fatalf("bad id %q", a)
	}
	if !(a < b) {
		t.Fatalf("%s !< %s", a, b)
	}
	if newSessionID(t0) == a {
		t.Fatal("ids collide")
	}
}

func TestStableID(t *testing.T) {
	if a, b := stableID("target", "a"), stableID("target", "a"); a != b || a == stableID("workload", "a") {
		t.Fatal("ids not stable or not separated by kind")
	}
	if stableID("target", "a") == 0 {
		t.Fatal("zero id")
	}
}

func TestFindUnitCgroup(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"system.slice/other.service", "app.slice/inner.slice/job.service/sub", "user.slice"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := findUnitCgroup(root, "job.service")
	if err != nil || got != "/app.slice/inner.slice/job.service" {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, err := findUnitCgroup(root, "other.service"); err != nil || got != "/system.slice/other.service" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := findUnitCgroup(root, "absent.service"); err == nil {
		t.Fatal("absent unit found")
	}
}

func TestResolveWorkloads(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "ci"), 0o755)
	uid := uint32(1001)
	wls := []policy.Workload{{Name: "a", Cgroup: "/ci"}, {Name: "b", UID: &uid}, {Name: "c", Unit: "x.service"}}
	got, err := resolveWorkloads(root, wls, true)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].CgroupID == 0 || got[1].UID == nil || *got[1].UID != 1001 || got[2].Problem == "" {
		t.Fatalf("resolved %+v", got)
	}
	cg, uids := workloadMaps(got)
	if cg[got[0].CgroupID] != got[0].ID || uids[1001] != got[1].ID || len(cg) != 1 {
		t.Fatalf("maps %v %v", cg, uids)
	}
	_, err = resolveWorkloads(root, []policy.Workload{{Name: "m", Cgroup: "/missing"}}, true)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing cgroup: %v", err)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for rel, ok := range map[string]bool{"6.18.44-fc": true, "5.8.0": true, "5.7.19": false, "4.19.0-21-amd64": false, "5.10": true, "x": false} {
		if err := kernelAtLeast(rel, minKernel); (err == nil) != ok {
			t.Errorf("%s: %v", rel, err)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestOIDCIdentityMatches(t *testing.T) {
	oi := &policy.OIDCIdentity{Issuer: "https://iss", Claims: map[string]string{"repository": "org/app"}, Groups: []string{"deploy", "ops"}}
	ok := &policy.Claims{Issuer: "https://iss", Subject: "s", Groups: []string{"ops"}, Strings: map[string]string{"repository": "org/app"}}
	for name, tc := range map[string]struct {
		c    *policy.Claims
		want bool
	}{
		"match":        {ok, true},
		"nil":          {nil, false},
		"other issuer": {&policy.Claims{Issuer: "https://other", Groups: ok.Groups, Strings: ok.Strings}, false},
		"claim differs": {&policy.Claims{Issuer: "https://iss", Groups: ok.Groups,
			Strings: map[string]string{"repository": "org/other"}}, false},
		"no group": {&policy.Claims{Issuer: "https://iss", Strings: ok.Strings}, false},
	} {
		if got := oi.Matches(tc.c); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func TestProcessIdentityMatches(t *testing.T) {
	uid := uint32(1001)
	pi := &policy.ProcessIdentity{UID: &uid, Cgroup: "/system.slice/nightly.service"}
	for _, tc := range []struct {
		uid    uint32
		cgroup string
		want   bool
	}{
		{1001, "/system.slice/nightly.service", true},
		{1001, "/system.slice/nightly.service/child", true},
		{1001, "/system.slice/nightly.service-other", false},
		{0, "/system.slice/nightly.service", false},
	} {
		if got := pi.Matches(tc.uid, "/usr/bin/x", tc.cgroup); got != tc.want {
			t.Errorf("uid %d cgroup %s: %v, want %v", tc.uid, tc.cgroup, got, tc.want)
		}
	}
	unit := &policy.ProcessIdentity{Unit: "nightly.service"}
	if !unit.Matches(0, "", "/system.slice/nightly.service") || unit.Matches(0, "", "/system.slice/other.service") {
		t.Error("unit matching")
	}
}

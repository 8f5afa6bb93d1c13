// SPDX-License-Identifier: Apache-2.0

package main

import "testing"

func TestDaemonProcs(t *testing.T) {
	for _, tt := range []struct {
		env       string
		def, want int
	}{
		{"", 1, 1},
		{"", 2, 1},
		{"", 3, 1},
		{"", 8, 4},
		{"2", 2, 2}, // set by the operator: kept
		{"6", 6, 6},
	} {
		if got := daemonProcs(tt.env, tt.def); got != tt.want {
			t.Errorf("daemonProcs(%q, %d) = %d, want %d", tt.env, tt.def, got, tt.want)
		}
	}
}

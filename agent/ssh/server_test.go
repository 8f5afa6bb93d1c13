// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tollgate-dev/tollgate/policy"
)

// TestCiphers checks that every cipher a target may list is one x/crypto
// implements without a known weakness (a name it did not know would be
// dropped from the offer silently), that a target's own list replaces
// the default, and that the default accepts every one of them.
func TestCiphers(t *testing.T) {
	supported := ssh.SupportedAlgorithms().Ciphers
	for _, c := range policy.SSHCiphers {
		if !slices.Contains(supported, c) {
			t.Errorf("policy.SSHCiphers lists %q, which x/crypto/ssh does not support (it supports %v)", c, supported)
		}
	}
	for _, c := range policy.DefaultSSHCiphers {
		if !slices.Contains(policy.SSHCiphers, c) {
			t.Errorf("policy.DefaultSSHCiphers lists %q, which is not in policy.SSHCiphers", c)
		}
	}
	if got := targetCiphers(policy.Target{}); !slices.Equal(got, policy.DefaultSSHCiphers) {
		t.Errorf("targetCiphers of a target without ciphers = %v, want the default %v", got, policy.DefaultSSHCiphers)
	}
	own := []string{policy.SSHCipherChaCha20}
	if got := targetCiphers(policy.Target{Ciphers: own}); !slices.Equal(got, own) {
		t.Errorf("targetCiphers = %v, want the target's %v", got, own)
	}
	if !slices.Equal(slices.Sorted(slices.Values(policy.DefaultSSHCiphers)), slices.Sorted(slices.Values(policy.SSHCiphers))) {
		t.Errorf("policy.DefaultSSHCiphers %v leaves out some of policy.SSHCiphers %v: a client that lists only those would fail", policy.DefaultSSHCiphers, policy.SSHCiphers)
	}
}

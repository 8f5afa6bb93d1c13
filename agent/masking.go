// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"slices"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// buildMaskers compiles the masking entries of each postgres target, once
// per config load: regular expressions and hash keys are read here, not
// per session. Targets without masking get none. An entry naming a tcp
// target is refused: tollgate cannot see into that protocol, and starting
// anyway would let the data through unmasked.
func buildMaskers(cfg policy.Config) (map[string]*mask.Masker, error) {
	out := map[string]*mask.Masker{}
	for _, t := range cfg.Targets {
		if t.Protocol == policy.ProtocolSSH {
			// SSH output has no columns: detectors and patterns mask
			// what is recorded.
			for _, m := range cfg.Masking {
				if slices.Contains(m.Targets, t.Name) && len(m.Columns) > 0 {
					return nil, fmt.Errorf("masking %s: target %q: column rules apply to postgres targets; ssh targets take detectors and patterns: %w", m.ID, t.Name, ErrUnsupported)
				}
			}
		}
		if t.Protocol != policy.ProtocolPostgres && t.Protocol != policy.ProtocolSSH {
			for _, m := range cfg.Masking {
				if slices.Contains(m.Targets, t.Name) {
					return nil, fmt.Errorf("masking %s: target %q: protocol %s: %w", m.ID, t.Name, t.Protocol, ErrUnsupported)
				}
			}
			continue
		}
		m, err := mask.New(cfg.Masking, t.Name, mask.Options{})
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", t.Name, err)
		}
		if m.Session(mask.Subject{}).Active() {
			out[t.Name] = m
		}
	}
	return out, nil
}
